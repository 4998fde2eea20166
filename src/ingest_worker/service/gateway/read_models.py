"""The read API's answers and request bodies as pydantic models: the OpenAPI document's
schemas (the routes answer with the same shapes, built by `store.reads`)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from ingest_worker.core.events import EVENT_TYPES
from ingest_worker.core.incident import Status
from ingest_worker.core.lifecycle import COMMAND_VERBS

StatusName = Literal[
    "PENDING", "OPEN", "ACKNOWLEDGED", "MITIGATING", "MITIGATED", "RESOLVED", "CLOSED",
    "CANCELLED", "ARCHIVED",
]  # fmt: skip
assert set(get_args(StatusName)) == {s.value for s in Status}
SeverityName = Literal["RED", "YELLOW"]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
CommandVerb = Literal[tuple(v.value for v in COMMAND_VERBS)]  # type: ignore[valid-type]


class IncidentItem(BaseModel):
    id: str
    tenant: str
    incidentKey: str
    episode: int
    title: str
    status: StatusName
    severity: SeverityName
    source: str
    env: str | None
    correlationKeys: list[str]
    occurrenceCount: int
    firstSeenAt: str
    lastSeenAt: str
    createdAt: str
    updatedAt: str
    acknowledgedAt: str | None
    mitigatedAt: str | None
    resolvedAt: str | None
    closedAt: str | None
    resolvedBy: Literal["signal", "command"] | None
    reopenCount: int
    previousIncidentId: str | None


class IncidentPage(BaseModel):
    items: list[IncidentItem]
    nextCursor: str | None = Field(
        description="Pass as `cursor` for the next page (same filters and sort); null: last page."
    )
    count: int | None = Field(default=None, description="All matches; only with count=true.")


class Evidence(BaseModel):
    kind: str
    ref: str
    sha256: str
    observedAt: str
    payload: dict[str, Any] | None = Field(
        default=None, description="Only with include=evidencePayloads (redacted)."
    )


class Episodes(BaseModel):
    previous: str | None
    next: str | None


class IncidentDetail(IncidentItem):
    classification: dict[str, Any]
    sourcePrimary: dict[str, Any]
    lastSeq: int
    episodes: Episodes
    evidence: list[Evidence]


class TimelineEvent(BaseModel):
    seq: int
    type: EventType
    occurredAt: str
    recordedAt: str
    cause: dict[str, Any] | None
    actor: dict[str, Any] | None
    rationale: str | None
    note: str | None
    changes: dict[str, Any] | None
    hash: str
    prevHash: str


class TimelinePage(BaseModel):
    items: list[TimelineEvent]
    nextAfterSeq: int | None = Field(
        description="Pass as `afterSeq` for the next page; null: no more events now."
    )


class CommandRequest(BaseModel):
    """A lifecycle command. The actor is the credential's, the commandId the Idempotency-Key."""

    model_config = ConfigDict(extra="forbid")

    type: CommandVerb  # type: ignore[valid-type]
    rationale: str | None = Field(default=None, max_length=5000)
    note: str | None = Field(default=None, max_length=5000)
    severity: SeverityName | None = None
    expectedSeq: int | None = Field(default=None, ge=1, le=2**31 - 1)


class CommandOutcome(BaseModel):
    commandId: str
    outcome: Literal["applied", "noop", "rejected"]
    reason: str | None = Field(description="Why it was rejected (stable code).")
    eventId: str | None = Field(description="The event it wrote (applied).")
    eventSeq: int | None = Field(description="That event's seq (applied).")
    status: StatusName | None = Field(description="The incident's status after it.")


class CommandPending(BaseModel):
    """Not decided within `wait`: its receipt will be at `location`."""

    commandId: str
    outcome: None = None
    location: str


class Receipt(CommandOutcome):
    type: str
    incidentId: str | None
    recordedAt: str
