"""A store written before tenants migrates in place: its rows become the default tenant's with
their ids, hashes and replays intact, and the worker carries on with them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from ingest_worker.core.canonical import canonical_sha256, incident_id
from ingest_worker.core.values import Command
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import Outcome, apply_batch
from ingest_worker.store.migrations import available_migrations, migrate
from tests.conftest import ServiceEndpoints
from tests.factories import BASE_TIME, incident_input, recovery

pytestmark = pytest.mark.integration

#: Tables in an order their foreign keys accept, each with the order its rows are copied in.
TABLES = {
    "incidents": "episode",
    "incident_events": "incident_id, seq",
    "incident_evidence": "incident_id, sha256",
    "processed_signals": "incident_key, signal_sha256",
    "recoveries": "scope, signal_sha256",
    "outbox_lanes": "lane",
    "outbox": "event_id",
    "command_receipts": "command_id",
    "command_results_outbox": "id",
}
TENANTS_VERSION = 5


@pytest.fixture
async def old_store(services: ServiceEndpoints) -> AsyncIterator[asyncpg.Connection]:
    """A database with the migrations before tenants only."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(services.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = services.admin_database_url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/{name}")
    try:
        await conn.execute(
            """CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in available_migrations():
            if migration.version < TENANTS_VERSION:
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _dump(conn: asyncpg.Connection, table: str) -> list[str]:
    """A table's rows as jsonb text without the tenant column (nor `tx`, which a later migration
    adds to incident_events), in a fixed order."""
    order = TABLES[table]
    query = f"SELECT (to_jsonb(t) - 'tenant' - 'tx')::text FROM {table} AS t ORDER BY {order}"  # noqa: S608
    return [r[0] for r in await conn.fetch(query)]


def _ack(command_id: str) -> Command:
    return Command(
        command_id=command_id, verb="acknowledge", incident_id=None, incident_key="k1",
        actor_type="human", actor_id="alice", roles=("ONCALL_ENGINEER",),
        issued_at=BASE_TIME + timedelta(seconds=30),
        content_sha256=canonical_sha256({"ack": command_id}),
    )  # fmt: skip


async def test_rows_written_before_tenants_become_the_default_tenants_unchanged(
    db_pool: asyncpg.Pool, old_store: asyncpg.Connection
) -> None:
    history = [
        incident_input("k1", signal="s1", scope="sc", at=1),
        incident_input("k2", signal="s2", scope="sc", at=2),
        recovery("sc", at=5),
        incident_input("k2", signal="s3", scope="sc", at=400),  # a new episode
        _ack("c-1"),
    ]
    async with db_pool.acquire() as new:
        await apply_batch(new, history)
        # The same rows, as the store before tenants held them (no tenant column there).
        copied = {table: await _dump(new, table) for table in TABLES}
    for table, rows in copied.items():
        insert = f"INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, $1)"  # noqa: S608
        for row in rows:
            await old_store.execute(insert, row)
    applied = await migrate(old_store)
    assert applied[0].version == TENANTS_VERSION  # and any later migrations
    for table in TABLES:
        assert await _dump(old_store, table) == copied[table], table
        if table != "outbox_lanes":
            tenants = await old_store.fetch(f"SELECT DISTINCT tenant FROM {table}")  # noqa: S608
            assert [r[0] for r in tenants] == ["default"], table
    assert await verify_chains(old_store) == []
    assert await replay_check(old_store) == []
    # The worker carries on: a redelivery is a duplicate, a new signal updates the same incident.
    result = await apply_batch(
        old_store, [history[0], incident_input("k1", signal="s9", scope="sc", at=3), _ack("c-1")]
    )
    assert result.outcomes == (Outcome.DUPLICATE, Outcome.UPDATED, Outcome.DUPLICATE)
    ids = await old_store.fetch("SELECT id FROM incidents WHERE incident_key = 'k1'")
    assert [r[0] for r in ids] == [incident_id("k1")]
    assert await verify_chains(old_store) == []
