"""The outbox's side of PostgreSQL: a publisher round's rows, their deletion, the backlog and the
`LISTEN` connection the batch transactions notify (`sql/outbox.sql`).

Delivery drives it (`delivery.outbox.OutboxPublisher`) without touching the driver: database
faults come out of a round as `TransientError`, rows as `OutboxRow`s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ingest_worker.core.errors import TransientError
from ingest_worker.store.queries import load_queries

#: The channel the batch transaction notifies on commit (`pg_notify` in `sql/store.sql`).
NOTIFY_CHANNEL = "ingest_outbox"

_SQL = load_queries("outbox.sql")
#: The lanes no other publisher holds, locked until the round's transaction ends.
LOCK_LANES = _SQL["lock_lanes"]
#: A round's events: `$1` rows of the locked lanes `$2`, in `seq` order per incident.
FETCH_ROUND = _SQL["fetch_round"]
_DATABASE_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class OutboxRow(Protocol):
    """A row of a round, read by column name (an `asyncpg.Record`)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def get(self, key: str, /) -> Any: ...


class OutboxRound:
    """One publisher round's transaction: what it reads stays locked until it ends."""

    def __init__(self, conn: PoolConnectionProxy) -> None:
        self._conn = conn

    async def events(self, limit: int) -> Sequence[OutboxRow]:
        """Up to `limit` events of the free lanes (`id, incident_id, seq, type, hash,
        payload_text, occurred_at, incident_key, traceparent, tenant`)."""
        lanes = [row["lane"] for row in await self._conn.fetch(LOCK_LANES)]
        if not lanes:
            return []
        return await self._conn.fetch(FETCH_ROUND, limit, lanes)

    async def delete_events(self, rows: Sequence[OutboxRow]) -> None:
        await self._conn.execute(
            _SQL["delete_events"], [r["tenant"] for r in rows], [r["id"] for r in rows]
        )

    async def results(self, limit: int) -> Sequence[OutboxRow]:
        """Up to `limit` pending command outcomes (`tenant, id, command_id, outcome, subject,
        payload_text, occurred_at`), locked against other publishers."""
        return await self._conn.fetch(_SQL["fetch_results"], limit)

    async def delete_results(self, rows: Sequence[OutboxRow]) -> None:
        await self._conn.execute(
            _SQL["delete_results"], [r["tenant"] for r in rows], [r["id"] for r in rows]
        )


class OutboxStore:
    """The outbox tables behind a pool, and the connection that listens for new rows."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._listener: PoolConnectionProxy | None = None
        self._on_notify: Callable[[Any, int, str, object], None] | None = None

    @contextlib.asynccontextmanager
    async def round(self) -> AsyncIterator[OutboxRound]:
        """A round's transaction; a database fault anywhere in it is a `TransientError`."""
        try:
            async with self._pool.acquire(timeout=10) as conn, conn.transaction():
                yield OutboxRound(conn)
        except _DATABASE_FAULTS as exc:
            raise TransientError(f"outbox database error: {exc!r}") from exc

    async def backlog(self) -> int:
        """Rows waiting in both outboxes."""
        async with self._pool.acquire(timeout=1) as conn:
            count: int = await conn.fetchval(_SQL["backlog"], timeout=1)
        return count

    async def listen(self, on_notify: Callable[[], object]) -> None:
        """Call `on_notify()` on every notification, on a dedicated connection (pooled ones
        reset their listeners on release); again after the connection was lost."""
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        conn = await self._pool.acquire(timeout=10)

        def notified(_conn: Any, _pid: int, _channel: str, _payload: object) -> None:
            on_notify()

        await conn.add_listener(NOTIFY_CHANNEL, notified)
        self._listener, self._on_notify = conn, notified

    async def unlisten(self) -> None:
        """Stop listening and give the connection back (errors ignored: it may be gone)."""
        if self._listener is None:
            return
        conn, self._listener = self._listener, None
        if self._on_notify is not None:
            with contextlib.suppress(Exception):
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
        with contextlib.suppress(Exception):
            await self._pool.release(conn, timeout=2)
