"""Domain values of the ingestion core: what a mapped signal asks the store to do.

Pure and immutable. Nothing here imports a driver or a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Incident severity. Ingestion may raise it, never lower it."""

    YELLOW = "YELLOW"
    RED = "RED"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.YELLOW: 1, Severity.RED: 2}


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A pointer to where something came from: `{kind, ref}`."""

    kind: str
    ref: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "ref": self.ref}


@dataclass(frozen=True, slots=True)
class EvidenceInput:
    """One piece of evidence for an incident. `payload` is JSON-ready and already redacted."""

    kind: str
    ref: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentInput:
    """What one signal asks the store to create or update.

    `signal_sha256` identifies the signal (sha256 of the canonical JSON of the parsed signal):
    the store applies an input with an already-seen `(incident_key, signal_sha256)` at most once.
    `signal_time` is timezone-aware UTC. `source_kind` is the registered source's name.
    """

    incident_key: str
    source_kind: str
    severity: Severity
    title: str
    env: str | None
    classification: Mapping[str, Any]
    source_primary: SourceRef
    signal_time: datetime
    correlation_keys: tuple[str, ...]
    evidence: tuple[EvidenceInput, ...]
    signal_sha256: str
    #: The recovery scope the incident belongs to (see `Recovery`); None: its incident_key.
    scope: str | None = None

    @property
    def recovery_scope(self) -> str:
        return self.scope if self.scope is not None else self.incident_key


@dataclass(frozen=True, slots=True)
class Recovery:
    """A recovery signal: the problem of `scope` went away at `signal_time`.

    It resolves every active incident of its scope whose newest trigger is older than
    `signal_time`, and is remembered, so that a later-arriving trigger with an older time is
    born resolved. Seed sources scope by what their keys share (deploy-status: env and deployId);
    external sources by the alert's identity, i.e. the incident key.
    """

    source_kind: str
    scope: str
    signal_time: datetime
    signal_sha256: str
    evidence: tuple[EvidenceInput, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceTransition:
    """A lifecycle verb a source reports on one of its own incidents: a PagerDuty
    acknowledgement, an Opsgenie note. Applied with the source as actor and authority; a verb
    the incident's state does not allow is counted and logged, never dead-lettered."""

    incident_key: str
    source_kind: str
    verb: str  # acknowledge | unacknowledge | reopen | annotate
    signal_time: datetime
    signal_sha256: str
    actor: str | None = None
    note: str | None = None
    evidence: tuple[EvidenceInput, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectedPart:
    """One invalid part of a group record (alert `index` of a notification). The record's
    other parts are applied; the record also goes to the dead-letter topic with reason
    `partially_invalid`, its message naming every rejected part. `message` never echoes
    input values."""

    index: int
    message: str


@dataclass(frozen=True, slots=True)
class Command:
    """A lifecycle command, validated. `content_sha256` identifies its content:
    the same `command_id` with other content is `idempotency_key_reused`."""

    command_id: str
    verb: str
    incident_id: str | None
    incident_key: str | None
    actor_type: str
    actor_id: str
    roles: tuple[str, ...]
    issued_at: datetime
    content_sha256: str
    rationale: str | None = None
    note: str | None = None
    severity: Severity | None = None
    expected_seq: int | None = None
    #: The latest `issued_at` accepted: the worker's clock when it read the command plus the
    #: allowed skew (set by the consumer; None: no such check). Not part of the content.
    not_after: datetime | None = None

    @property
    def evidence(self) -> tuple[EvidenceInput, ...]:
        return ()

    def actor_json(self) -> dict[str, Any]:
        return {"type": self.actor_type, "id": self.actor_id, "roles": list(self.roles)}


#: What one decoded signal asks for: a trigger, a recovery, a source-reported transition, or
#: (group records) the report of an invalid part; on the commands topic, a command.
SignalEffect = IncidentInput | Recovery | SourceTransition | RejectedPart | Command

#: What a batch applies to the store: the effects of its signal records and its commands.
BatchInput = IncidentInput | Recovery | SourceTransition | Command
