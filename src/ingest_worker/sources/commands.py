"""Lifecycle commands on `incident.commands`: the wire model and its decoding.

Decoded like signals (size, encoding, JSON, schema; a malformed command is dead-lettered with
its reason). Not a signal source: it is not in the registry, the worker subscribes it beside
them. What a valid command does is decided by the store (`core.incident.decide`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from ingest_worker.core.canonical import canonical_sha256
from ingest_worker.core.lifecycle import COMMAND_VERBS
from ingest_worker.core.redaction import redact_text
from ingest_worker.core.values import Command, Severity
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.wire import MAX_TEXT, RequiredRef, Signal, Text, Timestamp, WireModel

NAME: Final = "commands"
MAX_COMMAND_ID: Final = 128
MAX_ROLES: Final = 64

CommandVerb = Literal[tuple(v.value for v in COMMAND_VERBS)]  # type: ignore[valid-type]
Role = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Actor(WireModel):
    type: Literal["human", "service"]
    id: RequiredRef
    roles: Annotated[list[Role], Field(max_length=MAX_ROLES)]


class CommandMessage(Signal):
    """One command. The target is `incidentId` (a uuid) or `incidentKey` (its newest episode)."""

    commandId: Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_ID)]
    type: CommandVerb  # type: ignore[valid-type]
    incidentId: str | None = None
    incidentKey: RequiredRef | None = None
    actor: Actor
    issuedAt: Timestamp
    rationale: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    note: Text | None = None
    severity: Literal["RED", "YELLOW"] | None = None
    expectedSeq: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] | None = None

    @field_validator("incidentId")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID") from None

    @model_validator(mode="after")
    def _target_and_fields(self) -> CommandMessage:
        if (self.incidentId is None) == (self.incidentKey is None):
            raise ValueError("exactly one of incidentId and incidentKey is required")
        if self.type == "change_severity" and self.severity is None:
            raise ValueError("change_severity needs severity")
        if self.type == "annotate" and not self.note:
            raise ValueError("annotate needs a note")
        return self


def to_command(message: CommandMessage) -> tuple[Command, ...]:
    data = message.model_dump(mode="json", by_alias=True)
    return (
        Command(
            command_id=message.commandId,
            verb=str(message.type),
            incident_id=message.incidentId,
            incident_key=message.incidentKey,
            actor_type=message.actor.type,
            actor_id=message.actor.id,
            roles=tuple(message.actor.roles),
            issued_at=message.issuedAt,
            content_sha256=canonical_sha256(data),
            # Stored and published with the event: redacted like every free text.
            rationale=redact_text(message.rationale) if message.rationale else None,
            note=redact_text(message.note) if message.note else None,
            severity=Severity(message.severity) if message.severity else None,
            expected_seq=message.expectedSeq,
        ),
    )


COMMANDS: Final = Source(
    name=NAME,
    topic="incident.commands",
    setting="commands",
    summary="Lifecycle commands: acknowledge, resolve, close, … with an actor.",
    shapes=(Shape("command", CommandMessage, to_command, schema_file="command.schema.json"),),
)
