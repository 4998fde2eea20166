"""Incident events: pure construction of `incident.created`/`incident.updated` and their hash chain.

Event body (the JSON object stored as `incident_events.payload`, published with `hash` added):

    id             event id: canonical.event_id(incident_id, seq), as a string
    type           "incident.created" (seq 1) or "incident.updated"
    incident_id    incident id (string)
    incident_key   incident key
    seq            1, 2, … per incident
    occurred_at    canonical UTC timestamp of the signal that caused the event
    signal_sha256  identity of that signal
    prev_hash      hash of event seq-1 of the same incident; GENESIS_HASH (64 "0") for seq 1
    changes        what the event changed, see below
    snapshot       the incident after the event: every `incidents` column except the wall-clock
                   created_at/updated_at (ingest_worker.projection.SNAPSHOT_FIELDS)

`changes` always holds `correlation_keys_added` (sorted list, maybe empty) and `evidence_added`
(the evidence rows the event inserted, `[{"sha256", "kind", "ref"}]` sorted by sha256, maybe
empty). An `incident.updated` also holds `{"from": old, "to": new}` for every other snapshot
column whose value changed. An `incident.created` holds nothing else: its snapshot is the
initial state. Replaying the `changes` of events 2..n in seq order onto the snapshot of event 1
rebuilds the incident row (ingest_worker.audit checks it).

Hash, hex lowercase, computable by any reader from a stored row:

    hash = sha256( utf8( canonical_json(payload) + prev_hash ) )

where `payload` is the body without `hash` (exactly the stored `payload` column) and
canonical_json is JSON with keys sorted by code point, separators "," and ":", non-ASCII kept as
UTF-8 (see ingest_worker.canonical.canonical_json: Python's json.dumps(v, sort_keys=True,
separators=(",", ":"), ensure_ascii=False) gives the same bytes for values without floats).
Nothing hashed depends on a wall clock: `recorded_at` is not part of the body. JSON numbers
in snapshots are normalized beforehand (projection.json_value) so that the jsonb column, read
back and re-encoded, gives the same canonical text.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest_worker.core.canonical import canonical_json, event_id, sha256_hex
from ingest_worker.core.incident import Status
from ingest_worker.core.projection import timestamp_text

EVENT_CREATED = "incident.created"
EVENT_UPDATED = "incident.updated"

#: prev_hash of the first event of every incident.
GENESIS_HASH = "0" * 64

#: The body keys every event carries besides `hash`.
BODY_FIELDS = (
    "id", "type", "incident_id", "incident_key", "seq", "occurred_at", "signal_sha256",
    "prev_hash", "changes", "snapshot", "cause",
)  # fmt: skip

#: Every event type: one per transition, the same for signals and commands.
EVENT_TYPES = (
    "incident.created", "incident.updated", "incident.promoted", "incident.acknowledged",
    "incident.unacknowledged", "incident.mitigating", "incident.mitigated", "incident.resolved",
    "incident.reopened", "incident.closed", "incident.cancelled", "incident.archived",
    "incident.severity_changed", "incident.annotated",
)  # fmt: skip

CORRELATION_KEYS_ADDED = "correlation_keys_added"
EVIDENCE_ADDED = "evidence_added"


@dataclass(frozen=True, slots=True)
class AddedEvidence:
    """An evidence row inserted by an event."""

    sha256: str
    kind: str
    ref: str

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256, "kind": self.kind, "ref": self.ref}


@dataclass(frozen=True, slots=True)
class Event:
    """One `incident_events` row as the write path inserts it (recorded_at is the database's)."""

    id: uuid.UUID
    incident_id: uuid.UUID
    seq: int
    type: str
    occurred_at: datetime
    payload: dict[str, Any]
    payload_json: str
    prev_hash: str
    hash: str

    @property
    def body(self) -> dict[str, Any]:
        return {**self.payload, "hash": self.hash}


def event_hash(payload: Mapping[str, Any], prev_hash: str) -> str:
    """The chain hash of an event: sha256 of canonical_json(payload) followed by prev_hash."""
    return sha256_hex(canonical_json(payload) + prev_hash)


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values that, unlike ==, tells 1 from 1.0 and True from 1."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, dict | list):
        return canonical_json(a) == canonical_json(b)
    return True


def changes_between(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    evidence_added: Sequence[AddedEvidence] = (),
) -> dict[str, Any]:
    """The `changes` of an event turning snapshot `before` (None: nothing yet) into `after`."""
    changes: dict[str, Any] = {}
    if before is None:
        added = sorted(after["correlation_keys"])
    else:
        for field, value in after.items():
            previous = before.get(field)
            if field != "correlation_keys" and not same_json(previous, value):
                changes[field] = {"from": previous, "to": value}
        known = set(before["correlation_keys"])
        added = sorted(k for k in after["correlation_keys"] if k not in known)
    changes[CORRELATION_KEYS_ADDED] = added
    changes[EVIDENCE_ADDED] = [e.to_json() for e in sorted(evidence_added, key=_by_sha)]
    return changes


def _by_sha(item: AddedEvidence) -> str:
    return item.sha256


def apply_changes(snapshot: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot after an `incident.updated` event's `changes` (for replay)."""
    state = dict(snapshot)
    for field, change in changes.items():
        if field == EVIDENCE_ADDED:
            continue
        if field == CORRELATION_KEYS_ADDED:
            if change:
                state["correlation_keys"] = sorted(set(state["correlation_keys"]).union(change))
        else:
            state[field] = change["to"]
    return state


def build_event(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    *,
    occurred_at: datetime,
    signal_sha256: str,
    prev_hash: str,
    evidence_added: Sequence[AddedEvidence] = (),
    kind: str | None = None,
    cause: Mapping[str, Any] | None = None,
    rationale: str | None = None,
    note: str | None = None,
) -> Event:
    """The event that turns snapshot `before` into `after` (seq = after["last_seq"]).

    `kind`: the event type (default `incident.created` without `before`, else
    `incident.updated`); `cause`: `{kind: signal, signal_sha256}` (the default) or
    `{kind: command, command_id, actor}` / `{kind: source, …}`.
    """
    incident = uuid.UUID(after["id"])
    seq = int(after["last_seq"])
    if kind is None:
        kind = EVENT_CREATED if before is None else EVENT_UPDATED
    identity = event_id(incident, seq)
    payload = {
        "id": str(identity),
        "type": kind,
        "incident_id": after["id"],
        "incident_key": after["incident_key"],
        "seq": seq,
        "occurred_at": timestamp_text(occurred_at),
        "signal_sha256": signal_sha256,
        "prev_hash": prev_hash,
        "changes": changes_between(before, after, evidence_added),
        "snapshot": after,
        "cause": dict(cause)
        if cause is not None
        else {"kind": "signal", "signal_sha256": signal_sha256},
    }
    if rationale is not None:
        payload["rationale"] = rationale
    if note is not None:
        payload["note"] = note
    payload_json = canonical_json(payload)
    return Event(
        id=identity,
        incident_id=incident,
        seq=seq,
        type=kind,
        occurred_at=occurred_at,
        payload=payload,
        payload_json=payload_json,
        prev_hash=prev_hash,
        hash=sha256_hex(payload_json + prev_hash),
    )


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status transition an event records, for the lifecycle metrics."""

    from_status: str | None
    to_status: str
    cause: str
    #: seconds from first seen to acknowledged / resolved, when this event set them
    to_acknowledge: float | None
    to_resolve: float | None


def status_change(payload: Mapping[str, Any]) -> StatusChange | None:
    """The status change of an event body, if it made one (a created event counts: – → OPEN)."""
    changes = payload["changes"]
    snapshot = payload["snapshot"]
    if payload["type"] == EVENT_CREATED:
        before, after = None, snapshot["status"]
    elif "status" in changes:
        before, after = changes["status"]["from"], changes["status"]["to"]
    else:
        return None
    cause = str(payload.get("cause", {}).get("kind", "signal"))
    first = datetime.fromisoformat(snapshot["first_seen_at"])

    def since_first(field: str) -> float | None:
        change = changes.get(field)
        if not change or change.get("to") is None:
            return None
        return max(0.0, (datetime.fromisoformat(change["to"]) - first).total_seconds())

    return StatusChange(
        before,
        after,
        cause,
        since_first("acknowledged_at"),
        since_first("resolved_at") if after == Status.RESOLVED else None,
    )
