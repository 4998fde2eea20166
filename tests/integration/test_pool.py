"""The worker's connection pool against a real PostgreSQL: what releasing a connection does.

The pool's `reset=` (`keep_session`) skips asyncpg's default reset query, a server round trip
on every release; these tests pin both halves of that choice: nothing is sent on release, and
what must not leak (an open transaction, transaction-scoped advisory locks) does not.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from ingest_worker.store.postgres import create_pool

pytestmark = pytest.mark.integration


async def _single_connection_pool(database_url: str) -> asyncpg.Pool:
    settings = SimpleNamespace(
        database_url=SecretStr(database_url), db_pool_size=1, write_concurrency=-2
    )
    return await create_pool(settings)  # max_size 1: every acquire gets the same connection


async def test_releasing_a_connection_sends_no_reset_query(database_url: str) -> None:
    pool = await _single_connection_pool(database_url)
    try:
        async with pool.acquire() as conn:
            # Session state that asyncpg's default reset (`RESET ALL`) would undo on release.
            await conn.execute("SET application_name = 'kept-across-release'")
            backend = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == backend
            assert await conn.fetchval("SHOW application_name") == "kept-across-release"
    finally:
        await pool.close()


async def test_a_transaction_left_open_and_its_advisory_locks_end_at_release(
    database_url: str,
) -> None:
    pool = await _single_connection_pool(database_url)
    try:
        conn: Any = await pool.acquire()
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT pg_advisory_xact_lock(7, 42)")
        await pool.release(conn)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                conn.get_server_pid(),
            )
            assert held == 0
    finally:
        await pool.close()
