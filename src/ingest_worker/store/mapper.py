"""Between the domain and the tables: rows into incident states, decisions into statement
parameters.

The core decides on `IncidentState`s and records `Event`s; only this module knows which
columns a row has and in which order a statement takes its parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest_worker.core.errors import IngestError
from ingest_worker.core.incident import Status
from ingest_worker.core.lifecycle import RecoveryMark
from ingest_worker.core.plan import ChunkWrite
from ingest_worker.core.projection import IncidentState, json_value


class StoreIntegrityError(IngestError):
    """The stored data contradicts the store's invariants (e.g. a missing chain head)."""


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a stored time must carry a UTC offset")
    return moment.astimezone(UTC)


def _optional_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _json_column(value: Any) -> Any:
    """A jsonb column as read: text when the connection has no jsonb codec, else decoded."""
    return json.loads(value) if isinstance(value, str) else json_value(value)


def incident_state(row: Any) -> IncidentState:
    """An `incidents` row (asyncpg Record or mapping; jsonb as text or decoded) as a state."""
    previous = row["previous_incident_id"]
    return IncidentState(
        id=row["id"],
        incident_key=row["incident_key"],
        source_kind=row["source_kind"],
        severity=row["severity"],
        status=Status(row["status"]),
        title=row["title"],
        env=row["env"],
        classification=_json_column(row["classification"]),
        source_primary=_json_column(row["source_primary"]),
        correlation_keys=tuple(row["correlation_keys"]),
        first_seen_at=_utc(row["first_seen_at"]),
        last_seen_at=_utc(row["last_seen_at"]),
        occurrence_count=row["occurrence_count"],
        last_seq=row["last_seq"],
        lead_signal_at=_utc(row["lead_signal_at"]),
        lead_signal_sha256=row["lead_signal_sha256"],
        episode=row["episode"],
        previous_incident_id=None if previous is None else str(previous),
        recovery_scope=row["recovery_scope"],
        acknowledged_at=_optional_utc(row["acknowledged_at"]),
        mitigated_at=_optional_utc(row["mitigated_at"]),
        resolved_at=_optional_utc(row["resolved_at"]),
        closed_at=_optional_utc(row["closed_at"]),
        resolved_by=row["resolved_by"],
        reopen_count=row["reopen_count"],
    )


def incident_with_head(row: Any) -> tuple[IncidentState, str]:
    """A `select_incidents` / `select_command_targets` row: the state and its newest event's
    hash (which must exist: every incident row is the snapshot of its newest event)."""
    state = incident_state(row)
    if row["head_hash"] is None:
        raise StoreIntegrityError(f"incident {state.id} has no event seq {state.last_seq}")
    return state, row["head_hash"]


def recovery_mark(row: Any) -> RecoveryMark:
    """A `select_recoveries` row."""
    return RecoveryMark(row["signal_time"], row["signal_sha256"])


def chunk_parameters(
    write: ChunkWrite, traceparents: Sequence[str | None] | None, tenant: str
) -> list[Any]:
    """The parameters of `write_chunk`, in order. Few, wide parameters keep the driver's
    per-element encoding cost low; the statement derives every row from the events."""
    return [
        [e.payload_json for e in write.events],
        [e.hash for e in write.events],
        write.lanes,
        write.evidence_shas,
        write.evidence_payloads,
        traceparents,
        tenant,
    ]


def check_written(write: ChunkWrite, row: Any) -> None:
    """Raise unless `write_chunk` wrote exactly the computed rows (the locks guarantee it)."""
    expected = (write.incidents, len(write.evidence_shas), len(write.events), len(write.events))
    written = (row["incidents"], row["evidence"], row["events"], row["outbox"])
    if written != expected:
        raise StoreIntegrityError(
            f"wrote (incidents, evidence, events, outbox) {written}, expected {expected}"
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one command or source transition, the one shape from its decision to
    its `command_receipts` row, its published result, the metrics and the logs.

    `command_id` is a source transition's signal sha256; `result` (the JSON of the published
    outcome) and `content_sha256` are a command's only."""

    command_id: str
    verb: str
    outcome: str
    reason: str | None
    incident_id: str | None
    republished: bool = False
    content_sha256: str | None = None
    result: str | None = None
    event_id: str | None = None
    issued_at: datetime | None = None


def stored_receipt(row: Any) -> Receipt:
    """A `select_receipts` row: the outcome a command had, to publish again."""
    return Receipt(
        row["command_id"], "", row["outcome"], row["reason"], None, republished=True,
        content_sha256=row["content_sha256"], result=row["result"],
    )  # fmt: skip


def receipt_columns(receipts: Sequence[Receipt], tenant: str) -> list[Any]:
    """The parameters of `insert_receipts`."""
    return [
        [r.command_id for r in receipts],
        [r.content_sha256 for r in receipts],
        [r.verb for r in receipts],
        [None if r.incident_id is None else uuid.UUID(r.incident_id) for r in receipts],
        [r.outcome for r in receipts],
        [r.reason for r in receipts],
        [None if r.event_id is None else uuid.UUID(r.event_id) for r in receipts],
        [r.issued_at for r in receipts],
        [r.result for r in receipts],
        tenant,
    ]
