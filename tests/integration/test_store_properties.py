"""SPEC §3 rule 3, as properties: random signal streams with duplicates, in any order and split.

Each example runs inside a transaction that is rolled back, so every run starts from an empty
(migrated) database at the cost of a ROLLBACK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.values import EvidenceInput, IncidentInput, Severity
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import Connection, apply_batch
from tests.factories import incident_input

pytestmark = pytest.mark.integration

PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

signals = st.builds(
    lambda key, name, severity, at, keys, refs: incident_input(
        f"k{key}", signal=f"s{name}", severity=severity, at=at,
        correlation_keys=tuple(sorted(keys)),
        evidence=tuple(EvidenceInput("log", r, {"from": name}) for r in sorted(refs)),
    ),
    key=st.integers(0, 3),
    name=st.integers(0, 8),
    severity=st.sampled_from(Severity),
    at=st.integers(0, 20),  # few distinct times: ties are broken by the signal sha256
    keys=st.frozensets(st.sampled_from(["deploy:a", "deploy:b", "env:prod"]), max_size=2),
    refs=st.frozensets(st.sampled_from(["a.log", "b.log", "c.log"]), max_size=2),
)  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> list[IncidentInput]:
    """Signals with redeliveries: some signals appear several times."""
    distinct = draw(st.lists(signals, min_size=1, max_size=20))
    repeats = draw(st.lists(st.sampled_from(distinct), max_size=10))
    return draw(st.permutations(distinct + repeats))


batch_sizes = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@dataclass
class Store:
    incidents: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    events: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    outbox: list[dict[str, Any]]


class _RollBack(Exception):
    pass


def split(inputs: Sequence[IncidentInput], sizes: list[int]) -> list[list[IncidentInput]]:
    batches, start, turn = [], 0, 0
    while start < len(inputs):
        size = sizes[turn % len(sizes)]
        batches.append(list(inputs[start : start + size]))
        start, turn = start + size, turn + 1
    return batches


async def rows(conn: Connection, query: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(query)]


async def ingest(conn: Connection, inputs: list[IncidentInput], sizes: list[int]) -> Store:
    """Apply `inputs` in batches of `sizes` to an empty store, check it, read it, roll back."""
    try:
        async with conn.transaction():
            for batch in split(inputs, sizes):
                await apply_batch(conn, batch, outbox_lanes=4)
            assert await verify_chains(conn) == []
            assert await replay_check(conn) == []
            store = Store(
                incidents=await rows(conn, """
                    SELECT id, incident_key, source_kind, severity, status, title, env,
                           classification::text, source_primary::text, correlation_keys,
                           first_seen_at, last_seen_at, occurrence_count, last_seq,
                           lead_signal_at, lead_signal_sha256
                    FROM incidents ORDER BY id"""),
                evidence=await rows(conn, """
                    SELECT incident_id, kind, ref, sha256, payload::text, observed_at
                    FROM incident_evidence ORDER BY incident_id, sha256"""),
                events=await rows(conn, """
                    SELECT id, incident_id, seq, type, occurred_at, payload::text, prev_hash, hash
                    FROM incident_events ORDER BY incident_id, seq"""),
                signals=await rows(conn, """
                    SELECT incident_key, signal_sha256 FROM processed_signals
                    ORDER BY incident_key, signal_sha256"""),
                outbox=await rows(conn, "SELECT event_id, incident_id, seq, lane FROM outbox"
                                        " ORDER BY event_id"),
            )  # fmt: skip
            raise _RollBack
    except _RollBack:
        pass
    return store


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with db_pool.acquire() as conn:
        yield conn


@PROPERTY_SETTINGS
@given(stream=streams(), data=st.data(), sizes=batch_sizes, other_sizes=batch_sizes)
async def test_incident_rows_do_not_depend_on_signal_order_or_batching(
    conn: Connection,
    stream: list[IncidentInput],
    data: st.DataObject,
    sizes: list[int],
    other_sizes: list[int],
) -> None:
    reordered = data.draw(st.permutations(stream))
    first = await ingest(conn, stream, sizes)
    second = await ingest(conn, reordered, other_sizes)
    assert second.incidents == first.incidents
    assert second.signals == first.signals
    identity = [(e["incident_id"], e["sha256"], e["kind"], e["ref"]) for e in first.evidence]
    assert [
        (e["incident_id"], e["sha256"], e["kind"], e["ref"]) for e in second.evidence
    ] == identity
    assert len(second.events) == len(first.events) == len(first.signals)


@PROPERTY_SETTINGS
@given(stream=streams(), sizes=batch_sizes, other_sizes=batch_sizes)
async def test_same_order_reproduces_every_row_byte_for_byte(
    conn: Connection,
    stream: list[IncidentInput],
    sizes: list[int],
    other_sizes: list[int],
) -> None:
    first = await ingest(conn, stream, sizes)
    second = await ingest(conn, stream, other_sizes)  # batch boundaries do not matter either
    assert second == first
    counts = {r["incident_key"]: r["occurrence_count"] for r in first.incidents}
    distinct = {(s.incident_key, s.signal_sha256) for s in stream}
    assert sum(counts.values()) == len(distinct) == len(first.events) == len(first.outbox)
