"""The outbox publisher's round query against a real PostgreSQL: which rows, in which order, and
that it reads the payloads of the rows it publishes only (not of the whole backlog)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from ingest_worker.store.incidents import apply_batch
from ingest_worker.store.outbox import FETCH_ROUND, LOCK_LANES
from tests.factories import incident_input

pytestmark = pytest.mark.integration

LIMIT = 7


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _backlog(conn: asyncpg.Connection[Any], prefix: str = "k") -> None:
    # 40 incidents in 4 lanes, three events each: 120 outbox rows, more than one round.
    batch = [
        incident_input(f"{prefix}{i}", signal=f"s{j}", at=j) for i in range(40) for j in range(3)
    ]
    await apply_batch(conn, batch, outbox_lanes=4)


async def test_a_round_takes_the_first_rows_by_incident_and_seq_with_their_bodies(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        await _backlog(conn)
        expected = await conn.fetch(
            "SELECT event_id, incident_id, seq FROM outbox ORDER BY incident_id, seq LIMIT $1",
            LIMIT,
        )
        async with conn.transaction():
            lanes = [r["lane"] for r in await conn.fetch(LOCK_LANES)]
            rows = await conn.fetch(FETCH_ROUND, LIMIT, lanes)
        stored = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, type, hash, payload::text AS p FROM incident_events"
            )
        }
    assert [(r["id"], r["incident_id"], r["seq"]) for r in rows] == [tuple(r) for r in expected]
    for row in rows:
        body = json.loads(row["payload_text"])
        assert body == json.loads(stored[row["id"]]["p"])
        assert (row["type"], row["hash"]) == (stored[row["id"]]["type"], stored[row["id"]]["hash"])
        assert (row["occurred_at"], row["incident_key"]) == (
            body["occurred_at"],
            body["incident_key"],
        )


async def test_a_round_reads_the_events_it_publishes_and_no_other(db_pool: asyncpg.Pool) -> None:
    """With the payload in the select list of the sorted query, PostgreSQL rendered the payload
    of every backlog row before keeping LIMIT of them: the cost of a round grew with the backlog.
    """
    async with db_pool.acquire() as conn:
        await _backlog(conn)
        backlog = await conn.fetchval("SELECT count(*) FROM outbox")
        async with conn.transaction():
            lanes = [r["lane"] for r in await conn.fetch(LOCK_LANES)]
            explained = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {FETCH_ROUND}", LIMIT, lanes
            )
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    event_reads = [n for n in _nodes(plan) if n.get("Relation Name") == "incident_events"]
    assert backlog > 10 * LIMIT
    assert event_reads, "the round reads incident_events"
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in event_reads) == LIMIT


async def test_two_publishers_draining_one_backlog_take_every_event_once(
    db_pool: asyncpg.Pool,
) -> None:
    """Two publishers' rounds interleave on the lanes: a round reads its rows after its lanes
    are locked, so it never sees rows another round deleted and committed meanwhile."""
    from ingest_worker.store.outbox import OutboxStore

    store = OutboxStore(db_pool)

    async def publisher(taken: list[Any]) -> None:
        idle = 0
        while idle < 3:
            async with store.round() as round_:
                rows = await round_.events(LIMIT)
                taken.extend(r["id"] for r in rows)
                await round_.delete_events(rows)
            idle = idle + 1 if not rows else 0

    for attempt in range(8):  # the race needs a round's snapshot and another's commit to cross
        async with db_pool.acquire() as conn:
            await _backlog(conn, prefix=f"r{attempt}-")
            total = await conn.fetchval("SELECT count(*) FROM outbox")
        taken: list[Any] = []
        await asyncio.gather(publisher(taken), publisher(taken), publisher(taken))
        assert len(taken) == total
        assert len(set(taken)) == total
