"""The batch write path: one transaction applies a whole batch of incident inputs, set-based.

Per batch, on one connection, in one READ COMMITTED transaction:

1. advisory-lock every incident of the batch, in ascending lock-key order (no deadlock between
   concurrent writers, and the lock also covers incidents that do not exist yet);
2. insert the batch's distinct `(incident_key, signal_sha256)` into `processed_signals`;
   those that conflict are redeliveries (rule 1); create the outbox lanes it may use;
3. read the touched incidents, their chain heads and which of the new evidence exists;
4. fold the new signals into hash-chained events in batch order (`plan`, pure), a chunk of
   incidents at a time, and write each chunk with one statement while the next chunk is
   computed (PostgreSQL and Python work in parallel). The statement derives every row from
   the events: the events and their outbox rows, each incident row as the snapshot of its
   newest event, the evidence rows the events list; then `pg_notify('ingest_outbox', '')`.

A batch may mix tenants: each tenant's inputs are applied on its own rows (every query names
its tenant), after one lock statement for the whole batch.

Every writer of `incidents`/`incident_events` must take the same advisory locks
(`lock_key`, class `LOCK_CLASS`; keys derived from the tenant's ids). Driver exceptions propagate unchanged. A worker writing
several batches at once orders their lock statements with a `LockTurn` per batch.
No connection set-up is needed: jsonb crosses the wire as text, whatever codec is registered;
`init_connection` (a pool's `init=`) only makes jsonb columns read as Python values elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from ingest_worker import tracing
from ingest_worker.core.canonical import incident_id
from ingest_worker.core.events import StatusChange, status_change
from ingest_worker.core.lifecycle import DEFAULT_POLICY, Outcome, Rules, Verb
from ingest_worker.core.plan import BatchPlan, json_text, outbox_lane
from ingest_worker.core.tenants import DEFAULT_TENANT, tenant_name
from ingest_worker.core.values import (
    BatchInput,
    Command,
    IncidentInput,
    Recovery,
    SourceTransition,
)
from ingest_worker.store.chunks import ChunkPipeline
from ingest_worker.store.commands import Receipt, apply_commands, target_keys
from ingest_worker.store.mapper import StoreIntegrityError, incident_with_head, recovery_mark
from ingest_worker.store.queries import load_queries

__all__ = [
    "LOCK_CLASS",
    "BatchResult",
    "Connection",
    "Outcome",
    "StoreIntegrityError",
    "apply_batch",
    "init_connection",
    "lock_key",
    "outbox_lane",
]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

#: A connection, or a pool's proxy of one.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: Class (first key) of the transaction advisory locks on incidents ("inci").
LOCK_CLASS = 0x696E6369

#: New signals per write statement: the next chunk is computed while PostgreSQL writes one.
CHUNK_SIGNALS = 128


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: tuple[Outcome, ...]  # aligned with the inputs argument, one per input
    events_written: int
    commands: tuple[Receipt, ...] = ()
    transitions: tuple[StatusChange, ...] = ()


def lock_key(incident: uuid.UUID) -> int:
    """Second key of an incident's advisory lock: its first 4 bytes as a signed int4."""
    return int.from_bytes(incident.bytes[:4], "big", signed=True)


@dataclass(frozen=True, slots=True)
class LockTurn:
    """The turn of one batch among the batches a worker writes at once.

    A batch sends its lock statement only once the batch consumed before it holds its locks
    (`after` is set), and sets `locked` once it holds its own. Batches touching the same incident
    are so applied in consumption order, and its events keep that order; batches touching
    different incidents are written in parallel. Passed to `apply_batch` as `turn`.
    """

    after: asyncio.Event | None
    locked: asyncio.Event


def scope_lock_key(scope: str, tenant: str = DEFAULT_TENANT) -> int:
    """Second key of a recovery scope's advisory lock (same class as incidents): triggers and
    recoveries of one scope exclude each other, so neither misses the other."""
    return lock_key(incident_id(f"recovery-scope:{tenant_name(tenant, scope)}"))


def key_lock_key(incident_key: str, tenant: str = DEFAULT_TENANT) -> int:
    """Second key of the advisory lock of an incident key (all its episodes) in `tenant`."""
    return lock_key(incident_id(tenant_name(tenant, incident_key)))


#: `processed_signals` key of a recovery: its scope, in a namespace no incident key uses.
def recovery_key(scope: str) -> str:
    return f"recovery:{scope}"


async def apply_batch(
    conn: Connection,
    inputs: Sequence[BatchInput],
    *,
    outbox_lanes: int = 64,
    reopen_window: timedelta = timedelta(seconds=300),
    policy: Mapping[Verb, frozenset[str]] = DEFAULT_POLICY,
    open_after: Mapping[str, int] | None = None,
    tenants: Sequence[str] | None = None,
    turn: LockTurn | None = None,
) -> BatchResult:
    """Apply `inputs` (triggers, recoveries, commands, source transitions) in one transaction;
    one outcome per input, in input order. Signals are folded first (set-based), then commands
    and source transitions one by one, in batch order, on the state the signals left.

    `tenants[i]` is the tenant of `inputs[i]` (None: all in the default tenant); each tenant's
    inputs are applied on its own rows only, in one transaction for the whole batch. `turn`:
    this batch's turn among those its worker writes at once (see `LockTurn`).

    Traced as `ingest.store`; the outbox rows of the signals' events carry its `traceparent`."""
    settings = _Settings(outbox_lanes, reopen_window, policy, open_after, turn)
    if not tracing.active():
        return await _apply_batch(conn, inputs, tenants, settings)
    with tracing.span(
        "ingest.store",
        kind=tracing.SpanKind.CLIENT,
        attributes={"db.system.name": "postgresql", "ingest.store.inputs": len(inputs)},
    ) as span:
        result = await _apply_batch(conn, inputs, tenants, settings)
        counts: dict[str, int] = {}
        for outcome in result.outcomes:
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        span.set_attributes(
            {"ingest.store.events": result.events_written}
            | {f"ingest.store.{name}": count for name, count in counts.items()}
        )
        keys = {i.incident_key for i in inputs if isinstance(i, IncidentInput)}
        tracing.set_incidents(span, keys=sorted(keys))
        span.set_attribute("ingest.incident.count", len(keys))
        return result


@dataclass(frozen=True, slots=True)
class _Settings:
    lanes: int
    reopen_window: timedelta
    policy: Mapping[Verb, frozenset[str]]
    open_after: Mapping[str, int] | None
    turn: LockTurn | None

    def rules(self, tenant: str) -> Rules:
        return Rules(self.reopen_window, self.open_after, tenant, self.policy)


@dataclass(slots=True)
class _Applied:
    """What a tenant's part of a batch did: each input's outcome (by index in the part), the
    events written, the commands' receipts and the status changes."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    events: int = 0
    receipts: list[Receipt] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)


class _Part:
    """The inputs of one tenant in a batch (all of it, usually), with their own outcomes."""

    def __init__(self, tenant: str, inputs: Sequence[BatchInput]) -> None:
        self.tenant = tenant
        self.inputs = inputs
        self.locks: set[int] = set()
        self.first_of: dict[tuple[str, str], int] = {}
        self.signal_inputs: list[IncidentInput | Recovery | None] = []
        self.lifecycle: list[tuple[int, Command | SourceTransition]] = []
        self.transitions: dict[tuple[str, str], int] = {}
        for index, item in enumerate(inputs):
            if isinstance(item, IncidentInput):
                self.first_of.setdefault((item.incident_key, item.signal_sha256), index)
                self.locks.add(key_lock_key(item.incident_key, tenant))
                self.locks.add(scope_lock_key(item.recovery_scope, tenant))
                self.signal_inputs.append(item)
            elif isinstance(item, Recovery):
                self.first_of.setdefault((recovery_key(item.scope), item.signal_sha256), index)
                self.locks.add(scope_lock_key(item.scope, tenant))
                self.signal_inputs.append(item)
            else:
                self.signal_inputs.append(None)
                self.lifecycle.append((index, item))
                if isinstance(item, SourceTransition):
                    self.transitions.setdefault((item.incident_key, item.signal_sha256), index)
                if item.incident_key is not None:
                    self.locks.add(key_lock_key(item.incident_key, tenant))

    async def lock_targets(self, conn: Connection) -> None:
        """Add the locks of the commands' targets (their keys and scopes are immutable)."""
        if self.lifecycle:
            targets = [item for _, item in self.lifecycle]
            for key, scope in await target_keys(conn, targets, self.tenant):
                self.locks.add(key_lock_key(key, self.tenant))
                self.locks.add(scope_lock_key(scope, self.tenant))

    async def apply(
        self, conn: Connection, queries: Mapping[str, str], settings: _Settings
    ) -> _Applied:
        """Apply the part under the batch's locks."""
        marks = sorted(self.first_of.keys() | self.transitions.keys())
        # Every lane: new episodes and incidents resolved by scope are only known inside.
        rows = await conn.fetch(
            queries["insert_processed_signals"],
            [k for k, _ in marks],
            [s for _, s in marks],
            list(range(settings.lanes)),
            self.tenant,
        )
        new = {(r[0], r[1]) for r in rows}
        fresh = [self.first_of[m] for m in sorted(self.first_of) if m in new]
        fresh_transitions = {self.transitions[m] for m in self.transitions if m in new}
        applied = _Applied()
        if fresh:
            applied = await _apply_signals(conn, queries, self, fresh, settings)
        if self.lifecycle:
            done = await apply_commands(
                conn, self.lifecycle, rules=settings.rules(self.tenant), lanes=settings.lanes,
                fresh_transitions=fresh_transitions,
            )  # fmt: skip
            applied.outcomes.update(done.outcomes)
            applied.events += done.events
            applied.receipts.extend(done.receipts)
            applied.changes.extend(done.changes)
        return applied


def _parts(
    inputs: Sequence[BatchInput], tenants: Sequence[str] | None
) -> list[tuple[_Part, list[int]]]:
    """One part per tenant, in tenant order, each with the batch indexes of its inputs."""
    if tenants is None or all(t == DEFAULT_TENANT for t in tenants):
        return [(_Part(DEFAULT_TENANT, inputs), list(range(len(inputs))))]
    if len(tenants) != len(inputs):
        raise ValueError("tenants must align with inputs")
    indexes: dict[str, list[int]] = {}
    for index, tenant in enumerate(tenants):
        indexes.setdefault(tenant, []).append(index)
    return [(_Part(t, [inputs[i] for i in indexes[t]]), indexes[t]) for t in sorted(indexes)]


async def _apply_batch(
    conn: Connection,
    inputs: Sequence[BatchInput],
    tenants: Sequence[str] | None,
    settings: _Settings,
) -> BatchResult:
    if settings.lanes < 1:
        raise ValueError("outbox_lanes must be >= 1")
    if not inputs:
        return BatchResult((), 0)
    parts = _parts(inputs, tenants)
    queries = load_queries("store.sql")
    turn = settings.turn
    if turn is not None and turn.after is not None:
        await turn.after.wait()
    outcomes = [Outcome.DUPLICATE] * len(inputs)
    total = _Applied()
    async with conn.transaction(isolation="read_committed"):
        for part, _ in parts:
            await part.lock_targets(conn)
        # Every tenant's locks in one statement, in one order: no deadlock between writers.
        locks = sorted(set().union(*(part.locks for part, _ in parts)))
        await conn.execute(queries["lock_incidents"], LOCK_CLASS, locks)
        if turn is not None:
            turn.locked.set()
        for part, indexes in parts:
            applied = await part.apply(conn, queries, settings)
            for index, outcome in applied.outcomes.items():
                outcomes[indexes[index]] = outcome
            total.events += applied.events
            total.receipts.extend(applied.receipts)
            total.changes.extend(applied.changes)
    return BatchResult(tuple(outcomes), total.events, tuple(total.receipts), tuple(total.changes))


async def _apply_signals(
    conn: Connection,
    queries: Mapping[str, str],
    part: _Part,
    fresh: list[int],
    settings: _Settings,
) -> _Applied:
    inputs, tenant = part.signal_inputs, part.tenant
    plan = BatchPlan(
        inputs,  # type: ignore[arg-type]  # indexes of `fresh` are never None
        fresh,
        settings.lanes,
        reopen_window=settings.reopen_window,
        open_after=settings.open_after,
        tenant=tenant,
    )
    applied = _Applied()
    for index in fresh:  # a new recovery is `recovered`, whether or not it resolved anything
        if isinstance(inputs[index], Recovery):
            applied.outcomes[index] = Outcome.RECOVERED
    scopes = sorted(
        {item.recovery_scope for item in inputs if isinstance(item, IncidentInput)}
        | set(plan.recovery_scopes)
    )
    for row in await conn.fetch(queries["select_recoveries"], scopes, tenant):
        plan.add_stored_recovery(row["scope"], recovery_mark(row))
    if plan.recovery_scopes:
        recoveries = [r for r in (inputs[i] for i in fresh) if isinstance(r, Recovery)]
        await conn.execute(
            queries["insert_recoveries"],
            [r.scope for r in recoveries],
            [r.signal_sha256 for r in recoveries],
            [r.source_kind for r in recoveries],
            [r.signal_time for r in recoveries],
            tenant,
        )
    for row in await conn.fetch(
        queries["select_incidents"], plan.trigger_keys, plan.recovery_scopes, tenant
    ):
        plan.add_stored(*incident_with_head(row))
    if probe := plan.evidence_probe():
        found = await conn.fetch(
            queries["select_evidence"], [i for i, _ in probe], [s for _, s in probe], tenant
        )
        plan.add_stored_evidence((r["incident_id"], r["sha256"]) for r in found)
    written: list[str] = []
    traceparent = tracing.current_traceparent()
    async with ChunkPipeline(conn, queries["write_chunk"], tenant, traceparent) as pipeline:
        for chunk in plan.chunks(CHUNK_SIGNALS):
            write = plan.compute(chunk)
            applied.outcomes.update(write.outcomes)
            applied.events += len(write.events)
            applied.changes.extend(
                c for e in write.events if (c := status_change(e.payload)) is not None
            )
            await pipeline.send(write)
            if traceparent is not None:
                written.extend(str(e.incident_id) for e in write.events)
    tracing.set_incidents(tracing.current_span(), ids=written)
    return applied


async def init_connection(conn: Connection) -> None:
    """Optional pool `init=` hook: jsonb read and written as Python values (binary codec).

    The store does not need it. The binary format (a version byte, then JSON text) also works
    with COPY, unlike a text codec.
    """
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary",
        encoder=_encode_jsonb, decoder=_decode_jsonb,
    )  # fmt: skip


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json_text(value).encode("utf-8")


def _decode_jsonb(data: bytes) -> Any:
    if data[:1] != b"\x01":
        raise ValueError(f"unknown jsonb binary format version {data[:1]!r}")
    return json.loads(data[1:])
