"""PostgreSQL adapter: the connection pool and the store behind the pipeline's protocol.

Driver errors are classified here: connection, availability and concurrency faults become
`TransientError` (retry); anything else becomes `PermanentStoreError` (isolate and dead-letter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Protocol

import asyncpg

from ingest_worker.core.errors import PermanentStoreError, TransientError
from ingest_worker.core.lifecycle import DEFAULT_POLICY, Verb
from ingest_worker.core.values import BatchInput
from ingest_worker.store.incidents import BatchResult, LockTurn, apply_batch, init_connection

#: SQLSTATE classes that mean "try again later": connection (08), transaction rollback (40),
#: insufficient resources (53), operator intervention / shutdown (57), system error (58).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})

STATEMENT_TIMEOUT_SECONDS = 60.0


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | ConnectionError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False


class PoolSettings(Protocol):
    """What the pool needs of the service's settings."""

    @property
    def database_url(self) -> SecretStrLike: ...
    @property
    def db_pool_size(self) -> int: ...
    @property
    def write_concurrency(self) -> int: ...


class SecretStrLike(Protocol):
    def get_secret_value(self) -> str: ...


async def create_pool(settings: PoolSettings, *, min_size: int = 1) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=min_size,
        # One connection per concurrent batch, plus the outbox publisher, its listener, the probe.
        max_size=max(settings.db_pool_size, settings.write_concurrency + 3),
        init=init_connection,
        reset=keep_session,
        command_timeout=STATEMENT_TIMEOUT_SECONDS,
        timeout=10,
    )
    assert pool is not None
    return pool


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's `reset=`: nothing to undo on the server when a connection comes back.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per batch and per outbox round. The worker leaves
    no session state behind: its advisory locks are transaction-scoped, it sets no session
    settings, its cursors live inside transactions, and the outbox's listener holds a connection
    of its own and unlistens before returning it. The pool still rolls back an open transaction
    and drops client-side listeners before calling this (`Connection._reset`).
    """
    return None


class PostgresIncidentStore:
    """`IncidentStore` on an asyncpg pool: one transaction per batch."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        outbox_lanes: int,
        reopen_window_seconds: float = 300.0,
        policy: Mapping[Verb, frozenset[str]] = DEFAULT_POLICY,
        open_after: Mapping[str, int] | None = None,
    ) -> None:
        self._pool = pool
        self._lanes = outbox_lanes
        self._reopen_window = timedelta(seconds=reopen_window_seconds)
        self._policy = policy
        self._open_after = dict(open_after or {})

    async def apply(
        self,
        inputs: Sequence[BatchInput],
        *,
        tenants: Sequence[str] | None = None,
        turn: LockTurn | None = None,
    ) -> BatchResult:
        """`tenants[i]`: the tenant of `inputs[i]` (None: all the default tenant's)."""
        try:
            async with self._pool.acquire(timeout=10) as conn:
                return await apply_batch(
                    conn,
                    inputs,
                    outbox_lanes=self._lanes,
                    reopen_window=self._reopen_window,
                    policy=self._policy,
                    open_after=self._open_after,
                    tenants=tenants,
                    turn=turn,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(f"database unavailable: {exc!r}") from exc
            raise PermanentStoreError(f"{type(exc).__name__}: {exc}") from exc


async def ping(pool: asyncpg.Pool) -> bool:
    """True when PostgreSQL answers within a second."""
    try:
        async with pool.acquire(timeout=1) as conn:
            await conn.fetchval("SELECT 1", timeout=1)
        return True
    except Exception:
        return False
