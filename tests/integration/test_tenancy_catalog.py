"""Row-level security as the catalog states it, and the reading helper on a pooled connection.

Tests connect as a superuser, which bypasses row-level security: every check of what a role
sees runs under `SET LOCAL ROLE` of a role that does not.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from ingest_worker.core.tenants import InvalidTenant
from ingest_worker.store.incidents import apply_batch
from ingest_worker.store.migrations import migrate
from ingest_worker.store.tenancy import reading
from tests.conftest import ServiceEndpoints
from tests.factories import incident_input

pytestmark = pytest.mark.integration

TENANT_TABLES = {
    "incidents",
    "incident_evidence",
    "incident_events",
    "processed_signals",
    "recoveries",
    "outbox",
    "command_receipts",
    "command_results_outbox",
}
READABLE = {"incidents", "incident_evidence", "incident_events", "command_receipts"}


async def test_every_table_has_row_level_security_enabled_and_forced(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
               FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
               WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"""
        )
        columns = await conn.fetch(
            """SELECT table_name, is_nullable, column_default FROM information_schema.columns
               WHERE table_schema = current_schema() AND column_name = 'tenant'"""
        )
    tables = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}
    assert tables.keys() >= TENANT_TABLES
    assert {name: flags for name, flags in tables.items() if flags != (True, True)} == {}
    assert {c["table_name"] for c in columns} >= TENANT_TABLES
    assert {(c["is_nullable"], c["column_default"]) for c in columns} == {("NO", "'default'::text")}


async def test_tenant_leads_every_primary_and_unique_key(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT t.relname AS table_name, c.conname,
                      (SELECT a.attname FROM pg_attribute AS a
                       WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) AS first
               FROM pg_constraint AS c JOIN pg_class AS t ON t.oid = c.conrelid
               WHERE c.contype IN ('p', 'u', 'f') AND t.relname = ANY($1::text[])""",
            sorted(TENANT_TABLES),
        )
    assert rows
    assert [(r["table_name"], r["conname"]) for r in rows if r["first"] != "tenant"] == []


async def test_the_reader_role_cannot_bypass_security_and_may_only_select(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb"
            " FROM pg_roles WHERE rolname = 'ingest_reader'"
        )
        grants = await conn.fetch(
            """SELECT table_name, privilege_type FROM information_schema.role_table_grants
               WHERE grantee = 'ingest_reader'"""
        )
    assert role is not None
    assert dict(role) == dict.fromkeys(role.keys(), False)
    assert {g["privilege_type"] for g in grants} == {"SELECT"}
    assert {g["table_name"] for g in grants} == READABLE


async def _two_tenants(conn: asyncpg.Connection) -> None:
    """The same incident key in `default` (two signals) and in `acme` (one), by the store."""
    await apply_batch(
        conn,
        [
            incident_input("svc:checkout", signal="s1"),
            incident_input("svc:checkout", signal="s2", title="acme title"),
            incident_input("svc:checkout", signal="s3", at=5),
        ],
        tenants=["default", "acme", "default"],
    )


async def test_reading_on_one_pooled_connection_sees_only_its_tenant(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await _two_tenants(conn)
        seen = []
        for tenant in ["acme", "default", "acme", "globex", "default"]:
            async with pool.acquire() as conn, reading(conn, tenant) as tx:
                titles = await tx.fetch("SELECT tenant, title FROM incidents")
                events = await tx.fetchval("SELECT count(*) FROM incident_events")
                user = await tx.fetchval("SELECT current_user")
            seen.append((tenant, {tuple(r) for r in titles}, events, user))
        default = ("default", {("default", "RED deploy status (s3)")}, 2, "ingest_reader")
        acme = ("acme", {("acme", "acme title")}, 1, "ingest_reader")
        assert seen == [acme, default, acme, ("globex", set(), 0, "ingest_reader"), default]
        async with pool.acquire() as conn:  # after the transaction: the session's own role
            assert await conn.fetchval("SELECT current_user") != "ingest_reader"
            assert await conn.fetchval("SELECT current_setting('ingest.tenant', true)") in (
                None,
                "",
            )
    finally:
        await pool.close()


async def test_the_reader_sees_nothing_without_a_tenant_and_cannot_write(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        await _two_tenants(conn)
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE ingest_reader")
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE ingest_reader")
                await conn.execute("SELECT set_config('ingest.tenant', 'acme', true)")
                await conn.execute("DELETE FROM incidents")
        with pytest.raises(InvalidTenant):
            async with reading(conn, "Acme"):
                pass
        async with reading(conn, "acme") as tx:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await tx.execute("UPDATE incidents SET title = 'x'")


async def test_the_writer_role_writes_every_tenant_under_forced_security(
    db_pool: asyncpg.Pool,
) -> None:
    """ingest_writer is neither superuser nor BYPASSRLS: its own policy lets it see every row."""
    async with db_pool.acquire() as conn:
        await _two_tenants(conn)
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE ingest_writer")
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 2
            updated = await conn.execute("UPDATE incidents SET title = 'x'")
            assert updated == "UPDATE 2"
        assert await conn.fetchval("SELECT count(*) FROM incidents WHERE title = 'x'") == 2


async def test_a_non_superuser_owner_migrates_and_writes_under_forced_security(
    services: ServiceEndpoints,
) -> None:
    """Production's shape: the worker's role owns the tables and is no superuser, so forced
    row-level security applies to it; it writes every tenant through ingest_writer and reads
    as ingest_reader."""
    suffix = uuid.uuid4().hex[:12]
    role, database = f"owner_{suffix}", f"t_{suffix}"
    admin = await asyncpg.connect(services.admin_database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER {role}')
        # As an administrator would where roles exist already (they are cluster-wide).
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ingest_writer')"
            " THEN CREATE ROLE ingest_writer NOLOGIN; END IF;"
            " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ingest_reader')"
            " THEN CREATE ROLE ingest_reader NOLOGIN; END IF; END $$"
        )
        await admin.execute(f"GRANT ingest_writer, ingest_reader TO {role}")
        scheme, _, rest = services.admin_database_url.partition("://")
        host = rest.split("@", 1)[-1].rsplit("/", 1)[0]
        conn = await asyncpg.connect(f"{scheme}://{role}:pw@{host}/{database}")
        try:
            await migrate(conn)
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'incidents'"
            )
            assert owner == role
            await _two_tenants(conn)
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 2
            async with reading(conn, "acme") as tx:
                assert await tx.fetchval("SELECT count(*) FROM incidents") == 1
            # Without ingest_writer's policy the owner itself would see nothing: it is forced.
            await admin.execute(f"REVOKE ingest_writer FROM {role}")
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
