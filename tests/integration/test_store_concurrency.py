"""Concurrent writers: overlapping batches never deadlock, never duplicate, never lose a count."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import asyncpg
import pytest

from ingest_worker.core.values import IncidentInput
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import LockTurn, Outcome, apply_batch
from tests.factories import incident_input

pytestmark = pytest.mark.integration


def signals(keys: int, per_key: int) -> list[IncidentInput]:
    return [
        incident_input(f"k{k}", signal=f"s{n}", at=(k * 7 + n * 13) % 60,
                       correlation_keys=(f"deploy:{n % 3}",))
        for k in range(keys) for n in range(per_key)
    ]  # fmt: skip


async def run_writers(pool: asyncpg.Pool, plans: list[list[list[IncidentInput]]]) -> list[Outcome]:
    """Each plan is a list of batches applied in order on its own connection, all plans at once."""

    async def writer(batches: list[list[IncidentInput]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with pool.acquire() as conn:
            for batch in batches:
                outcomes += (await apply_batch(conn, batch, outbox_lanes=4)).outcomes
        return outcomes

    results = await asyncio.wait_for(asyncio.gather(*(writer(p) for p in plans)), 120)
    return [o for outcomes in results for o in outcomes]


async def assert_exact(pool: asyncpg.Pool, distinct: list[IncidentInput]) -> None:
    per_key = Counter(s.incident_key for s in distinct)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT incident_key, occurrence_count, last_seq FROM incidents")
        assert {r["incident_key"]: r["occurrence_count"] for r in rows} == per_key
        assert all(r["last_seq"] == r["occurrence_count"] for r in rows)
        assert await conn.fetchval("SELECT count(*) FROM incident_events") == len(distinct)
        assert await conn.fetchval("SELECT count(*) FROM outbox") == len(distinct)
        assert await conn.fetchval("SELECT count(*) FROM processed_signals") == len(distinct)
        assert await verify_chains(conn) == []
        assert await replay_check(conn) == []


async def test_overlapping_batches_in_opposite_orders_do_not_deadlock(
    db_pool: asyncpg.Pool,
) -> None:
    everything = signals(keys=40, per_key=6)
    rng = random.Random(4)
    plans = []
    for _ in range(3):
        mine = everything[:]
        rng.shuffle(mine)
        plans.append([mine[i : i + 60] for i in range(0, len(mine), 60)])
    outcomes = await run_writers(db_pool, plans)
    counts = Counter(outcomes)
    assert counts[Outcome.CREATED] == 40
    assert counts[Outcome.CREATED] + counts[Outcome.UPDATED] == len(everything)
    assert counts[Outcome.DUPLICATE] == 2 * len(everything)
    await assert_exact(db_pool, everything)


async def test_reversed_key_orders_many_times(db_pool: asyncpg.Pool) -> None:
    """The classic deadlock shape: A locks k1 then k2 while B locks k2 then k1."""
    everything = []
    plans: list[list[list[IncidentInput]]] = [[], []]
    for round_ in range(25):
        a = [incident_input(f"k{k}", signal=f"a{round_}") for k in range(10)]
        b = [incident_input(f"k{k}", signal=f"b{round_}") for k in reversed(range(10))]
        plans[0].append(a)
        plans[1].append(b)
        everything += a + b
    outcomes = await run_writers(db_pool, plans)
    assert Counter(outcomes) == {Outcome.CREATED: 10, Outcome.UPDATED: 490}
    await assert_exact(db_pool, everything)


async def test_four_writers_sharing_keys_keep_exact_counts(db_pool: asyncpg.Pool) -> None:
    everything = signals(keys=60, per_key=5)
    plans = [[everything[i::4][j : j + 25] for j in range(0, 75, 25)] for i in range(4)]
    outcomes = await run_writers(db_pool, plans)
    assert Counter(outcomes) == {Outcome.CREATED: 60, Outcome.UPDATED: 240}
    await assert_exact(db_pool, everything)


async def test_a_publisher_holding_a_lane_does_not_block_writers(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await apply_batch(conn, signals(keys=10, per_key=1), outbox_lanes=4)
    async with db_pool.acquire() as publisher, publisher.transaction():
        await publisher.fetch("SELECT lane FROM outbox_lanes FOR UPDATE SKIP LOCKED")
        async with db_pool.acquire() as conn:
            result = await asyncio.wait_for(
                apply_batch(conn, signals(keys=10, per_key=3), outbox_lanes=4), 10
            )
    assert result.events_written == 20


async def test_a_batch_takes_its_locks_only_after_the_batch_before_it_holds_its_own(
    db_pool: asyncpg.Pool,
) -> None:
    """`LockTurn`: the later batch of one worker waits for the earlier one's locks, even when it
    reaches the database first, so an incident's events keep the consumption order."""
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def apply_in_turn(conn: asyncpg.Connection, signal: str, turn: LockTurn) -> None:
        await apply_batch(conn, [incident_input("k", signal=signal)], outbox_lanes=4, turn=turn)

    async with db_pool.acquire() as early, db_pool.acquire() as late:
        second = asyncio.create_task(
            apply_in_turn(late, "second", LockTurn(first_locked, second_locked))
        )
        await asyncio.sleep(0)  # one step: the task runs up to its turn, before any I/O
        assert not second.done() and not second_locked.is_set()
        await apply_in_turn(early, "first", LockTurn(None, first_locked))
        await asyncio.wait_for(second, 30)
        rows = await early.fetch(
            "SELECT e.seq, e.payload->>'signal_sha256' AS signal"
            " FROM incident_events e ORDER BY e.seq"
        )
    assert second_locked.is_set()
    expected = [incident_input("k", signal=s).signal_sha256 for s in ("first", "second")]
    assert [r["signal"] for r in rows] == expected
