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

Every writer of `incidents`/`incident_events` must take the same advisory locks
(`lock_key`, class `LOCK_CLASS`). Driver exceptions propagate unchanged. A worker writing
several batches at once orders their lock statements with `LOCK_TURN` (see `LockTurn`).
No connection set-up is needed: jsonb crosses the wire as text, whatever codec is registered;
`init_connection` (a pool's `init=`) only makes jsonb columns read as Python values elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from ingest_worker import tracing
from ingest_worker.core.canonical import incident_id
from ingest_worker.core.events import StatusChange, status_change
from ingest_worker.core.lifecycle import DEFAULT_POLICY, Verb
from ingest_worker.core.plan import (
    BatchPlan,
    ChunkWrite,
    Outcome,
    StoredRecovery,
    StoreIntegrityError,
    json_text,
    outbox_lane,
)
from ingest_worker.core.values import Command, IncidentInput, Recovery, SourceTransition
from ingest_worker.store.commands import CommandOutcome, apply_commands, target_keys
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
    commands: tuple[CommandOutcome, ...] = ()
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
    different incidents are written in parallel. Set for the writing task with `LOCK_TURN`.
    """

    after: asyncio.Event | None
    locked: asyncio.Event


LOCK_TURN: ContextVar[LockTurn | None] = ContextVar("ingest_worker_lock_turn", default=None)


def scope_lock_key(scope: str) -> int:
    """Second key of a recovery scope's advisory lock (same class as incidents): triggers and
    recoveries of one scope exclude each other, so neither misses the other."""
    return lock_key(incident_id(f"recovery-scope:{scope}"))


#: `processed_signals` key of a recovery: its scope, in a namespace no incident key uses.
def recovery_key(scope: str) -> str:
    return f"recovery:{scope}"


Effect: TypeAlias = "IncidentInput | Recovery | Command | SourceTransition"


async def apply_batch(
    conn: Connection,
    inputs: Sequence[Effect],
    *,
    outbox_lanes: int = 64,
    reopen_window: timedelta = timedelta(seconds=300),
    policy: Mapping[Verb, frozenset[str]] = DEFAULT_POLICY,
    open_after: Mapping[str, int] | None = None,
) -> BatchResult:
    """Apply `inputs` (triggers, recoveries, commands, source transitions) in one transaction;
    one outcome per input, in input order. Signals are folded first (set-based), then commands
    and source transitions one by one, in batch order, on the state the signals left.

    Traced as `ingest.store`; the outbox rows of the signals' events carry its `traceparent`."""
    if not tracing.active():
        return await _apply_batch(conn, inputs, outbox_lanes, reopen_window, policy, open_after)
    with tracing.span(
        "ingest.store",
        kind=tracing.SpanKind.CLIENT,
        attributes={"db.system.name": "postgresql", "ingest.store.inputs": len(inputs)},
    ) as span:
        result = await _apply_batch(conn, inputs, outbox_lanes, reopen_window, policy, open_after)
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


async def _apply_batch(
    conn: Connection,
    inputs: Sequence[Effect],
    outbox_lanes: int,
    reopen_window: timedelta,
    policy: Mapping[Verb, frozenset[str]],
    open_after: Mapping[str, int] | None,
) -> BatchResult:
    if outbox_lanes < 1:
        raise ValueError("outbox_lanes must be >= 1")
    outcomes = [Outcome.DUPLICATE] * len(inputs)
    if not inputs:
        return BatchResult((), 0)
    locks: set[int] = set()
    first_of: dict[tuple[str, str], int] = {}
    signal_inputs: list[IncidentInput | Recovery | None] = []
    lifecycle: list[tuple[int, Command | SourceTransition]] = []
    transitions: dict[tuple[str, str], int] = {}
    for index, item in enumerate(inputs):
        if isinstance(item, IncidentInput):
            first_of.setdefault((item.incident_key, item.signal_sha256), index)
            locks.add(lock_key(incident_id(item.incident_key)))
            locks.add(scope_lock_key(item.recovery_scope))
            signal_inputs.append(item)
        elif isinstance(item, Recovery):
            first_of.setdefault((recovery_key(item.scope), item.signal_sha256), index)
            locks.add(scope_lock_key(item.scope))
            signal_inputs.append(item)
        else:
            signal_inputs.append(None)
            lifecycle.append((index, item))
            if isinstance(item, SourceTransition):
                transitions.setdefault((item.incident_key, item.signal_sha256), index)
            if item.incident_key is not None:
                locks.add(lock_key(incident_id(item.incident_key)))
    queries = load_queries("store.sql")
    signals = sorted(first_of)
    marks = sorted(first_of.keys() | transitions.keys())
    # Every lane: new episodes and incidents resolved by scope are only known inside.
    lanes = list(range(outbox_lanes))
    turn = LOCK_TURN.get()
    if turn is not None and turn.after is not None:
        await turn.after.wait()
    events = 0
    command_report: list[CommandOutcome] = []
    changes: list[StatusChange] = []
    async with conn.transaction(isolation="read_committed"):
        if lifecycle:
            for key, scope in await target_keys(conn, [item for _, item in lifecycle]):
                locks.add(lock_key(incident_id(key)))
                locks.add(scope_lock_key(scope))
        await conn.execute(queries["lock_incidents"], LOCK_CLASS, sorted(locks))
        if turn is not None:
            turn.locked.set()
        rows = await conn.fetch(
            queries["insert_processed_signals"],
            [k for k, _ in marks],
            [s for _, s in marks],
            lanes,
        )
        new = {(r[0], r[1]) for r in rows}
        fresh = [first_of[m] for m in signals if m in new]
        fresh_transitions = {transitions[m] for m in transitions if m in new}
        if fresh:
            events += await _apply_signals(
                conn,
                queries,
                signal_inputs,
                fresh,
                outcomes,
                outbox_lanes,
                reopen_window,
                changes,
                open_after,
            )
        if lifecycle:
            written, command_report = await apply_commands(
                conn, lifecycle, outcomes, policy=policy, lanes=outbox_lanes,
                fresh_transitions=fresh_transitions, changes=changes,
            )  # fmt: skip
            events += written
    return BatchResult(tuple(outcomes), events, tuple(command_report), tuple(changes))


async def _apply_signals(
    conn: Connection,
    queries: Mapping[str, str],
    inputs: Sequence[IncidentInput | Recovery | None],
    fresh: list[int],
    outcomes: list[Outcome],
    outbox_lanes: int,
    reopen_window: timedelta,
    changes: list[StatusChange],
    open_after: Mapping[str, int] | None = None,
) -> int:
    plan = BatchPlan(
        inputs,  # type: ignore[arg-type]  # indexes of `fresh` are never None
        fresh,
        outbox_lanes,
        reopen_window=reopen_window,
        open_after=open_after,
    )
    for index in fresh:  # a new recovery is `recovered`, whether or not it resolved anything
        if isinstance(inputs[index], Recovery):
            outcomes[index] = Outcome.RECOVERED
    scopes = sorted(
        {item.recovery_scope for item in inputs if isinstance(item, IncidentInput)}
        | set(plan.recovery_scopes)
    )
    for row in await conn.fetch(queries["select_recoveries"], scopes):
        plan.add_stored_recovery(
            row["scope"], StoredRecovery(row["signal_time"], row["signal_sha256"])
        )
    if plan.recovery_scopes:
        recoveries = [r for r in (inputs[i] for i in fresh) if isinstance(r, Recovery)]
        await conn.execute(
            queries["insert_recoveries"],
            [r.scope for r in recoveries],
            [r.signal_sha256 for r in recoveries],
            [r.source_kind for r in recoveries],
            [r.signal_time for r in recoveries],
        )
    for row in await conn.fetch(
        queries["select_incidents"], plan.trigger_keys, plan.recovery_scopes
    ):
        plan.add_stored(row)
    if probe := plan.evidence_probe():
        found = await conn.fetch(
            queries["select_evidence"], [i for i, _ in probe], [s for _, s in probe]
        )
        plan.add_stored_evidence((r["incident_id"], r["sha256"]) for r in found)
    events = 0
    written: list[str] = []
    traceparent = tracing.current_traceparent()
    async with _Pipeline(conn, queries["write_chunk"], traceparent) as pipeline:
        for chunk in plan.chunks(CHUNK_SIGNALS):
            write = plan.compute(chunk, outcomes)
            events += len(write.events)
            changes.extend(c for e in write.events if (c := status_change(e.payload)) is not None)
            await pipeline.send(write)
            if traceparent is not None:
                written.extend(str(e.incident_id) for e in write.events)
    tracing.set_incidents(tracing.current_span(), ids=written)
    return events


class _Pipeline:
    """Runs chunk writes one at a time, each while the caller computes the next chunk.

    On exit the last write is awaited. After an error, a write still in flight is awaited (its
    own error ignored) so that the transaction rolls back on an idle connection.
    """

    def __init__(self, conn: Connection, query: str, traceparent: str | None = None) -> None:
        self._conn = conn
        self._query = query
        self._traceparent = traceparent
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if exc_type is None:
            await task
            return
        try:
            await asyncio.wait([task])  # the statement in flight finishes, whatever its outcome
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.cancelled():
            task.exception()  # retrieved: the error already propagating is the one that counts

    async def send(self, write: ChunkWrite) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task
        self._task = asyncio.create_task(self._write(write))
        await asyncio.sleep(0)  # the task sends its statement now, before the caller computes on

    async def _write(self, write: ChunkWrite) -> None:
        traceparents = [self._traceparent] * len(write.events) if self._traceparent else None
        write.check(await self._conn.fetchrow(self._query, *write.arguments, traceparents))


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
