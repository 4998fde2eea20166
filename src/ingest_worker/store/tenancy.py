"""Reading as a tenant: every read path runs as `ingest_reader` with its tenant set.

`ingest_reader` is a login-less role (NOSUPERUSER, NOBYPASSRLS, SELECT only) and row-level
security is forced on every table: inside `reading(conn, tenant)` a query sees the rows of
`tenant` and nothing else, whatever it asks for. Both settings are transaction-local
(`SET LOCAL`), so a pooled connection serves the next tenant with nothing left behind.

    async with pool.acquire() as conn, reading(conn, "acme") as tx:
        rows = await tx.fetch("SELECT id FROM incidents ORDER BY last_seen_at DESC LIMIT 25")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import asyncpg

from ingest_worker.core.tenants import check_tenant

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: The role of every read path, and the setting its row-level security policy reads.
READER_ROLE = "ingest_reader"
TENANT_SETTING = "ingest.tenant"

Isolation = Literal["read_committed", "repeatable_read", "serializable"]

# One round trip: the role and the tenant, both local to the transaction.
_ENTER = "SELECT set_config('role', $1, true), set_config('ingest.tenant', $2, true)"


@asynccontextmanager
async def reading(
    conn: Connection, tenant: str, *, isolation: Isolation = "read_committed"
) -> AsyncIterator[Connection]:
    """A read-only transaction on `conn` as `ingest_reader`, scoped to `tenant`.

    Raises InvalidTenant (a ValueError) for a malformed tenant before touching the connection.
    Yields `conn`; the role and tenant end with the transaction (commit or rollback).
    """
    check_tenant(tenant)
    async with conn.transaction(isolation=isolation, readonly=True):
        await conn.execute(_ENTER, READER_ROLE, tenant)
        yield conn
