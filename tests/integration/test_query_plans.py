"""The reads of the write path and of the outbox probe indexes whatever plan PostgreSQL picks.

asyncpg prepares every statement, and after five executions PostgreSQL may switch a statement to
its generic plan, built without the parameters' values. A plain join of the outbox round's
picked rows to `incident_events` is then a hash join over the whole event table (this test fails
on it), and in a saturation run auto_explain showed `incident_key = ANY($1) OR id = ANY($2)`
(the command targets' scopes) scanning all of `incidents` per batch, 5–25 ms at 30,000–100,000
incidents. Every read here is planned generically on an analyzed store of a few thousand
incidents and recoveries, and no plan may scan a table that grows with history. Every query
is scoped to a tenant, and every index probe of a growing table leads with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from ingest_worker.store.incidents import apply_batch
from ingest_worker.store.outbox import FETCH_ROUND
from ingest_worker.store.queries import load_queries
from tests.factories import incident_input, recovery

pytestmark = pytest.mark.integration

#: Tables that grow with history (the outbox and its lanes hold only what is in flight).
GROWING = {
    "incidents",
    "incident_events",
    "incident_evidence",
    "processed_signals",
    "recoveries",
}


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _probes(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(index name, index condition) of every index probe of the plan."""
    if "Index Name" in plan:
        yield plan["Index Name"], plan.get("Index Cond", "")
    for child in plan.get("Plans", []):
        yield from _probes(child)


@pytest.fixture
async def store(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    async with db_pool.acquire() as conn:
        for start in range(0, 3000, 500):
            batch = [
                incident_input(f"k{i}", signal="s", scope=f"scope{i}", at=10)
                for i in range(start, start + 500)
            ]
            # Half of the scopes recover (a table that grows with history too).
            batch += [recovery(f"scope{i}", at=20) for i in range(start, start + 500, 2)]
            # The same keys in two tenants: a probe without the tenant would find both.
            await apply_batch(conn, batch + batch, tenants=["default"] * 750 + ["acme"] * 750)
        await conn.execute("ANALYZE")
    return db_pool


QUERIES = load_queries("store.sql")
#: statement → its number of parameters
CASES = {
    "select_command_scopes": (QUERIES["select_command_scopes"], 3),
    "select_command_targets": (QUERIES["select_command_targets"], 3),
    "select_incidents": (QUERIES["select_incidents"], 3),
    "select_recoveries": (QUERIES["select_recoveries"], 2),
    "select_evidence": (QUERIES["select_evidence"], 3),
    "outbox round": (FETCH_ROUND, 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_the_generic_plan_scans_no_table_that_grows_with_history(
    store: asyncpg.Pool, name: str
) -> None:
    query, arity = CASES[name]
    async with store.acquire() as conn, conn.transaction():
        indexes = {
            r["indexname"]: r["tablename"]
            for r in await conn.fetch("SELECT indexname, tablename FROM pg_indexes")
        }
        # The generic plan does not depend on the values: EXECUTE it with NULLs.
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE probe AS {query}")
        nulls = ", ".join(["NULL"] * arity)
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe({nulls})")
        await conn.execute("DEALLOCATE probe")
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    scans = [(node, table) for node, table in _scans(plan) if table in GROWING]
    assert scans, f"{name} reads no table?"
    assert not [s for s in scans if s[0] == "Seq Scan"], scans
    probes = [(i, cond) for i, cond in _probes(plan) if indexes.get(i) in GROWING]
    assert probes, f"{name} probes no index?"
    # The tenant and a key: a probe by the tenant alone would read the whole tenant.
    assert [(i, c) for i, c in probes if not c.startswith("((tenant = ") or " AND " not in c] == []
