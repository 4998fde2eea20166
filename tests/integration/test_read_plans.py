"""Every read of the read side is served by an index that leads with the tenant, whatever plan
PostgreSQL picks: each statement is planned generically (as asyncpg's prepared statements may
be after five executions) on an analyzed store of many tenants, as `ingest_reader` with a tenant
set, and no plan may scan a table that grows with history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from ingest_worker.store import reads
from ingest_worker.store.queries import load_queries
from tests.read_rows import BASE, Row, insert

pytestmark = pytest.mark.integration

GROWING = {"incidents", "incident_events", "incident_evidence", "command_receipts"}
SQL = load_queries("reads.sql")
STREAM_SQL = load_queries("stream.sql")
#: statement → its number of parameters
CASES: dict[str, tuple[str, int]] = {
    **{f"list {sort}": (sql, 18) for sort, sql in reads.LIST_SQL.items()},
    "count": (reads.COUNT_SQL, 18),
    "incident": (reads.INCIDENT_SQL, 2),
    "incident_exists": (SQL["incident_exists"], 2),
    "next_episode": (SQL["next_episode"], 3),
    "evidence_of": (SQL["evidence_of"], 3),
    "timeline_of": (SQL["timeline_of"], 5),
    "receipt_of": (SQL["receipt_of"], 2),
    "stream events_between": (STREAM_SQL["events_between"], 10),
    "stream head": (STREAM_SQL["stream_head"], 1),
    "stream event_tx": (STREAM_SQL["event_tx"], 3),
}


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from _scans(child)


@pytest.fixture
async def store(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    # 40 tenants of 60 incidents, 2 events each: a tenant is a small slice of every table.
    rows = [
        Row(f"t{t:02d}", f"key-{i}", minute=i, status=("OPEN", "RESOLVED")[i % 2], events=2)
        for t in range(40)
        for i in range(60)
    ]
    receipts = [(f"t{t:02d}", f"c-{i}") for t in range(40) for i in range(60)]
    async with db_pool.acquire() as conn:
        await insert(conn, rows, recorded=BASE + timedelta(days=1))
        await conn.executemany(
            "INSERT INTO command_receipts (tenant, command_id, content_sha256, type, outcome, "
            "issued_at, result) VALUES ($1, $2, 'x', 'annotate', 'noop', now(), '{}')",
            receipts,
        )
        await conn.execute("ANALYZE")
    return db_pool


async def _plan(pool: asyncpg.Pool, query: str, arity: int) -> dict[str, Any]:
    async with pool.acquire() as conn, reads.reading_on(conn, "t07"):
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE probe AS {query}")
        nulls = ", ".join(["NULL"] * arity)
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe({nulls})")
        await conn.execute("DEALLOCATE probe")
    plan: dict[str, Any] = (json.loads(explained) if isinstance(explained, str) else explained)[0][
        "Plan"
    ]
    return plan


async def test_the_generic_plan_of_every_read_scans_no_table_that_grows_with_history(
    store: asyncpg.Pool,
) -> None:
    found: dict[str, list[tuple[str, str]]] = {}
    for name, (query, arity) in sorted(CASES.items()):
        plan = await _plan(store, query, arity)
        found[name] = [(node, table) for node, table in _scans(plan) if table in GROWING]
    assert all(found.values()), {n: s for n, s in found.items() if not s}
    seq_scans = {n: s for n, s in found.items() if any(node == "Seq Scan" for node, _ in s)}
    assert not seq_scans
