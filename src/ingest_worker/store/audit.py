"""`verify` (hash chains) and `replay --check` (projection rebuilt from events) over the store.

Both stream the tables in (tenant, incident id) order through server-side cursors and merge
them incident by incident (every tenant, or the one asked for), so memory stays bounded by one incident's evidence whatever the table sizes.
They read one consistent snapshot (a read-only REPEATABLE READ transaction, or the caller's
transaction when one is open) and never write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from ingest_worker.core.canonical import canonical_json, event_id, evidence_sha256, utc_timestamp
from ingest_worker.core.events import (
    CORRELATION_KEYS_ADDED,
    EVENT_CREATED,
    EVENT_TYPES,
    EVIDENCE_ADDED,
    GENESIS_HASH,
    apply_changes,
    event_hash,
    same_json,
)
from ingest_worker.core.projection import SNAPSHOT_FIELDS, lifecycle_defaults
from ingest_worker.store.incidents import Connection
from ingest_worker.store.mapper import incident_state
from ingest_worker.store.queries import load_queries

_PREFETCH = 500


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A place where an incident's event chain is not what the hash chain says it must be."""

    incident_id: uuid.UUID
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f" seq {self.seq}" if self.seq is not None else ""
        return f"incident {self.incident_id}{where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class ProjectionDiff:
    """A value the events rebuild (`rebuilt`) that differs from what is stored at `where`."""

    incident_id: uuid.UUID
    where: str
    rebuilt: Any
    stored: Any

    def __str__(self) -> str:
        return (
            f"incident {self.incident_id}: {self.where}: events give {_render(self.rebuilt)}, "
            f"stored {_render(self.stored)}"
        )


def _render(value: Any) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        return repr(value)


#: An incident's place in the audit order: (tenant, incident id).
_Key = tuple[str, uuid.UUID]


class _Stream:
    """A peekable stream of rows from a server-side cursor, read in (tenant, incident id) order."""

    def __init__(self, rows: AsyncIterator[asyncpg.Record], key: str) -> None:
        self._rows = rows
        self._key = key
        self._head: asyncpg.Record | None = None
        self._done = False

    async def peek_id(self) -> _Key | None:
        if self._head is None and not self._done:
            try:
                self._head = await anext(self._rows)
            except StopAsyncIteration:
                self._done = True
        return None if self._head is None else (self._head["tenant"], self._head[self._key])

    async def take(self, incident: _Key) -> asyncpg.Record | None:
        """The next row if it belongs to `incident`."""
        if await self.peek_id() != incident:
            return None
        row, self._head = self._head, None
        return row


def _stream(conn: Connection, query: str, key: str, tenant: str | None) -> _Stream:
    sql = load_queries("audit.sql")[query]
    return _Stream(aiter(conn.cursor(sql, tenant, prefetch=_PREFETCH)), key)


async def _next_incident(*streams: _Stream) -> _Key | None:
    ids = [i for i in [await s.peek_id() for s in streams] if i is not None]
    return min(ids) if ids else None


def _snapshot_transaction(conn: Connection) -> Any:
    if conn.is_in_transaction():
        return conn.transaction()
    return conn.transaction(isolation="repeatable_read", readonly=True)


async def verify_chains(conn: Connection, tenant: str | None = None) -> list[ChainBreak]:
    """Recompute every event hash and link; check seq 1..n and `incidents.last_seq`.
    Every tenant's incidents, or only `tenant`'s."""
    breaks: list[ChainBreak] = []
    async with _snapshot_transaction(conn):
        incidents = _stream(conn, "incidents_by_id", "id", tenant)
        events = _stream(conn, "events_by_incident", "incident_id", tenant)
        while (key := await _next_incident(incidents, events)) is not None:
            incident = key[1]
            row = await incidents.take(key)
            expected_seq, prev_hash = 1, GENESIS_HASH
            while (event := await events.take(key)) is not None:
                problems = _event_problems(event, expected_seq, prev_hash)
                breaks.extend(ChainBreak(incident, event["seq"], p) for p in problems)
                expected_seq, prev_hash = event["seq"] + 1, event["hash"]
            last = expected_seq - 1
            if row is None:
                breaks.append(ChainBreak(incident, None, "events without an incidents row"))
            elif last == 0:
                breaks.append(ChainBreak(incident, None, "incidents row without any event"))
            elif row["last_seq"] != last:
                problem = f"incidents.last_seq is {row['last_seq']}, the chain ends at {last}"
                breaks.append(ChainBreak(incident, None, problem))
    return breaks


async def verify_incident(conn: Connection, tenant: str, incident: uuid.UUID) -> list[ChainBreak]:
    """`verify_chains` for one incident of `tenant`, in the caller's transaction (a read path's:
    the console's mark that the timeline's hash chain verifies). No event: one break."""
    rows = await conn.fetch(load_queries("audit.sql")["events_of_incident"], tenant, incident)
    if not rows:
        return [ChainBreak(incident, None, "no event")]
    breaks: list[ChainBreak] = []
    expected_seq, prev_hash = 1, GENESIS_HASH
    for event in rows:
        breaks.extend(
            ChainBreak(incident, event["seq"], p)
            for p in _event_problems(event, expected_seq, prev_hash)
        )
        expected_seq, prev_hash = event["seq"] + 1, event["hash"]
    return breaks


def _event_problems(event: asyncpg.Record, expected_seq: int, prev_hash: str) -> list[str]:
    problems = []
    incident, seq = event["incident_id"], event["seq"]
    if seq != expected_seq:
        problems.append(f"seq {seq} where {expected_seq} was expected")
    if event["id"] != event_id(incident, seq):
        problems.append(f"id {event['id']} is not the deterministic id {event_id(incident, seq)}")
    linked = GENESIS_HASH if seq == 1 else prev_hash
    if event["prev_hash"] != linked:
        problems.append(f"prev_hash {event['prev_hash']} does not link to {linked}")
    payload = json.loads(event["payload"])
    if not isinstance(payload, dict):
        return [*problems, "payload is not a JSON object"]
    recomputed = event_hash(payload, event["prev_hash"])
    if recomputed != event["hash"]:
        problems.append(f"hash {event['hash']} does not match the recomputed {recomputed}")
    columns = {
        "id": str(event["id"]),
        "incident_id": str(incident),
        "seq": seq,
        "type": event["type"],
        "occurred_at": utc_timestamp(event["occurred_at"]),
        "prev_hash": event["prev_hash"],
    }
    for name, value in columns.items():
        if not same_json(payload.get(name), value):
            hashed = payload.get(name)
            problems.append(f"column {name} is {value!r}, the hashed body says {hashed!r}")
    if (seq == 1) != (event["type"] == EVENT_CREATED):
        problems.append(f"type {event['type']} at seq {seq}")
    return problems


async def replay_check(conn: Connection, tenant: str | None = None) -> list[ProjectionDiff]:
    """Rebuild every incident from its events' `changes` alone and diff it against the tables.
    Every tenant's incidents, or only `tenant`'s."""
    diffs: list[ProjectionDiff] = []
    async with _snapshot_transaction(conn):
        incidents = _stream(conn, "incidents_by_id", "id", tenant)
        events = _stream(conn, "events_by_incident", "incident_id", tenant)
        evidence = _stream(conn, "evidence_by_incident", "incident_id", tenant)
        while (key := await _next_incident(incidents, events, evidence)) is not None:
            row = await incidents.take(key)
            rebuilt, added = await _replay_events(key, events, diffs)
            _diff_row(key[1], rebuilt, row, diffs)
            await _diff_evidence(key, added, evidence, diffs)
    return diffs


async def _replay_events(
    key: _Key, events: _Stream, diffs: list[ProjectionDiff]
) -> tuple[dict[str, Any] | None, dict[str, tuple[str, str]]]:
    """Start from the created event's snapshot, apply every later event's changes in seq order.

    Each event's `changes` must start from the rebuilt state (`from`) and lead to its snapshot.
    Returns the rebuilt incident and the evidence the events added (sha256 → (kind, ref)).
    """
    state: dict[str, Any] | None = None
    added: dict[str, tuple[str, str]] = {}
    incident = key[1]
    while (event := await events.take(key)) is not None:
        where = f"incident_events seq {event['seq']}"
        try:
            state = _replay_event(incident, event, where, state, added, diffs)
        except (AttributeError, KeyError, TypeError) as exc:  # a payload of the wrong shape
            diffs.append(ProjectionDiff(incident, f"{where} payload", "an event body", repr(exc)))
    return state, added


def _replay_event(
    incident: uuid.UUID,
    event: asyncpg.Record,
    where: str,
    state: dict[str, Any] | None,
    added: dict[str, tuple[str, str]],
    diffs: list[ProjectionDiff],
) -> dict[str, Any]:
    payload = json.loads(event["payload"])
    changes = payload["changes"]
    snapshot = payload["snapshot"]
    for item in changes[EVIDENCE_ADDED]:
        if item["sha256"] in added:
            diffs.append(ProjectionDiff(incident, f"{where} evidence_added", None, item))
        added[item["sha256"]] = (item["kind"], item["ref"])
    snapshot = lifecycle_defaults(snapshot)
    if state is None:
        if event["type"] != EVENT_CREATED:
            diffs.append(ProjectionDiff(incident, f"{where} type", EVENT_CREATED, event["type"]))
        return snapshot
    if event["type"] == EVENT_CREATED or event["type"] not in EVENT_TYPES:
        diffs.append(ProjectionDiff(incident, f"{where} type", "a later event type", event["type"]))
    for field, change in changes.items():
        if field not in (CORRELATION_KEYS_ADDED, EVIDENCE_ADDED):
            before = state.get(field)
            if not same_json(change["from"], before):
                diffs.append(
                    ProjectionDiff(
                        incident, f"{where} changes.{field}.from", before, change["from"]
                    )
                )
    state = apply_changes(state, changes)
    for field in SNAPSHOT_FIELDS:
        if not same_json(state.get(field), snapshot.get(field)):
            diffs.append(
                ProjectionDiff(
                    incident, f"{where} snapshot.{field}", state.get(field), snapshot.get(field)
                )
            )
    return state


def _diff_row(
    incident: uuid.UUID,
    rebuilt: dict[str, Any] | None,
    row: asyncpg.Record | None,
    diffs: list[ProjectionDiff],
) -> None:
    if row is None:
        if rebuilt is not None:
            diffs.append(ProjectionDiff(incident, "incidents", "a row", None))
        return
    stored = incident_state(row).snapshot()
    if rebuilt is None:
        diffs.append(ProjectionDiff(incident, "incidents", None, "a row without events"))
        return
    for field in SNAPSHOT_FIELDS:
        if not same_json(rebuilt.get(field), stored[field]):
            diffs.append(ProjectionDiff(incident, f"incidents.{field}", rebuilt.get(field),
                                        stored[field]))  # fmt: skip


async def _diff_evidence(
    key: _Key,
    added: dict[str, tuple[str, str]],
    evidence: _Stream,
    diffs: list[ProjectionDiff],
) -> None:
    seen: set[str] = set()
    incident = key[1]
    while (row := await evidence.take(key)) is not None:
        sha, item = row["sha256"], (row["kind"], row["ref"])
        seen.add(sha)
        where = f"incident_evidence {sha}"
        if sha != evidence_sha256(incident, row["kind"], row["ref"]):
            diffs.append(ProjectionDiff(incident, f"{where} sha256",
                                        evidence_sha256(incident, *item), sha))  # fmt: skip
        if sha not in added:
            diffs.append(ProjectionDiff(incident, where, None, list(item)))
        elif added[sha] != item:
            diffs.append(ProjectionDiff(incident, where, list(added[sha]), list(item)))
    for sha in sorted(added.keys() - seen):
        diffs.append(ProjectionDiff(incident, f"incident_evidence {sha}", list(added[sha]), None))
