"""Whole-table views for operators, across tenants (`sql/overview.sql`): the worker's incident
gauge and the CLI's timeline of an incident."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ingest_worker.store.queries import load_queries

_SQL = load_queries("overview.sql")

Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def incident_counts(
    conn: Connection,
    statuses: Sequence[str] | None = None,
    *,
    timeout: float,  # noqa: ASYNC109
) -> dict[tuple[str, str], int]:
    """Incidents per (status, severity): of `statuses` only, or of every status (None)."""
    if statuses is None:
        rows = await conn.fetch(_SQL["all_counts"], timeout=timeout)
    else:
        rows = await conn.fetch(_SQL["active_counts"], list(statuses), timeout=timeout)
    return {(r[0], r[1]): r[2] for r in rows}


async def incident_timeline(conn: Connection, incident: str) -> list[Any]:
    """Every event of every episode of an incident key (or of one incident id), in order:
    `episode, seq, type, occurred_at, cause, rationale, note, status, now, id`."""
    return list(await conn.fetch(_SQL["timeline"], incident))
