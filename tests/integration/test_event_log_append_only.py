"""The database itself refuses to change or remove recorded incident events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from ingest_worker.store.incidents import Connection, apply_batch
from tests.factories import incident_input

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [incident_input("k", signal=f"s{i}") for i in range(3)])
        yield conn


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE incident_events SET type = 'incident.forged' WHERE seq = 2",
        "UPDATE incident_events SET recorded_at = now()",
        "UPDATE incident_events SET seq = seq WHERE false",
        "DELETE FROM incident_events WHERE seq = 3",
        "DELETE FROM incident_events WHERE false",
        "TRUNCATE incident_events CASCADE",
    ],
)
async def test_changing_or_removing_events_is_rejected(conn: Connection, statement: str) -> None:
    before = await conn.fetch("SELECT * FROM incident_events ORDER BY seq")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute(statement)
    assert await conn.fetch("SELECT * FROM incident_events ORDER BY seq") == before


async def test_appending_events_still_works(conn: Connection) -> None:
    result = await apply_batch(conn, [incident_input("k", signal="s9")])
    assert result.events_written == 1
    assert await conn.fetchval("SELECT max(seq) FROM incident_events") == 4
