"""The read side's queries, one module for the HTTP API, the console and the CLI.

Every query names its tenant and runs in a read-only transaction as the `ingest_reader` role
with the same tenant set for the transaction (`reading`): row-level security is the backstop,
the explicit `tenant = $1` the path the planner indexes. Lists are keyset pages over one index
per sort (`sql/reads.sql`, indexes in the read-indexes migration); the cursor is opaque and
bound to the sort and the filters (`store.cursors`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.tenants import check_tenant
from ingest_worker.store import tenancy
from ingest_worker.store.cursors import (
    SORT_COLUMNS,
    BadReadRequest,
    IncidentFilter,
    decode_cursor,
    encode_cursor,
    page_bounds,
    sort_key,
)
from ingest_worker.store.incidents import Connection
from ingest_worker.store.queries import load_queries
from ingest_worker.store.stream import StreamPosition

__all__ = [
    "ITEM_FIELDS",
    "BadReadRequest",
    "IncidentFilter",
    "Page",
    "StreamPosition",
    "count_incidents",
    "get_incident",
    "get_receipt",
    "iter_incidents",
    "iter_rows",
    "list_incidents",
    "reading",
    "reading_on",
    "timeline",
]

MAX_LIMIT = 100
ACQUIRE_SECONDS = 10.0
#: Rows per round trip of a CSV export (one snapshot, fetched by keyset pages).
EXPORT_PAGE = 500

_SQL = load_queries("reads.sql")


def _compose(name: str) -> str:
    return (
        _SQL[name]
        .replace("/*columns*/", _SQL["incident_columns"])
        .replace("/*filters*/", _SQL["incident_filters"])
    )


#: sort → its statement (public: the plan test prepares each one).
LIST_SQL = {sort: _compose(f"list_by_{column}") for sort, column in SORT_COLUMNS.items()}
COUNT_SQL = _compose("count_incidents")
INCIDENT_SQL = _compose("incident_by_id")

#: The fields of a list item, in order (the CSV header).
ITEM_FIELDS = (
    "id", "tenant", "incidentKey", "episode", "title", "status", "severity", "source", "env",
    "correlationKeys", "occurrenceCount", "firstSeenAt", "lastSeenAt", "createdAt", "updatedAt",
    "acknowledgedAt", "mitigatedAt", "resolvedAt", "closedAt", "resolvedBy", "reopenCount",
    "previousIncidentId",
)  # fmt: skip


# One round trip: the role, the tenant and the planning mode, all local to the transaction.
# Custom plans: the list's optional filters (`$n IS NULL OR …`) fold away once the planner
# sees the values, so that a selective filter gets the index that fits it; a generic plan of
# the same statement walks the sort's index and filters (still by index, never a table scan:
# the plan test checks both).
_ENTER = (
    "SELECT set_config('role', $1, true), set_config('ingest.tenant', $2, true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)


@asynccontextmanager
async def reading_on(
    conn: Connection, tenant: str, *, snapshot: bool = False
) -> AsyncIterator[Connection]:
    """A read-only transaction on `conn` as `ingest_reader`, scoped to `tenant` (as
    `store.tenancy.reading`, planning each statement for its values); `snapshot`:
    REPEATABLE READ, for an export paging through one consistent view."""
    check_tenant(tenant)
    isolation: Literal["repeatable_read", "read_committed"] = (
        "repeatable_read" if snapshot else "read_committed"
    )
    async with conn.transaction(isolation=isolation, readonly=True):
        await conn.execute(_ENTER, tenancy.READER_ROLE, tenant)
        yield conn


@asynccontextmanager
async def reading(
    pool: asyncpg.Pool, tenant: str, *, snapshot: bool = False
) -> AsyncIterator[Connection]:
    """`reading_on` a connection of `pool` (waiting at most `ACQUIRE_SECONDS` for one)."""
    async with (
        pool.acquire(timeout=ACQUIRE_SECONDS) as conn,
        reading_on(conn, tenant, snapshot=snapshot) as scoped,
    ):
        yield scoped


# ------------------------------------------------------------------ rendering
def _time(moment: datetime | None) -> str | None:
    return None if moment is None else utc_timestamp(moment)


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def incident_item(row: asyncpg.Record) -> dict[str, Any]:
    """A list item (the read API's field names, in `ITEM_FIELDS` order)."""
    return {
        "id": str(row["id"]),
        "tenant": row["tenant"],
        "incidentKey": row["incident_key"],
        "episode": row["episode"],
        "title": row["title"],
        "status": row["status"],
        "severity": row["severity"],
        "source": row["source_kind"],
        "env": row["env"],
        "correlationKeys": list(row["correlation_keys"]),
        "occurrenceCount": row["occurrence_count"],
        "firstSeenAt": _time(row["first_seen_at"]),
        "lastSeenAt": _time(row["last_seen_at"]),
        "createdAt": _time(row["created_at"]),
        "updatedAt": _time(row["updated_at"]),
        "acknowledgedAt": _time(row["acknowledged_at"]),
        "mitigatedAt": _time(row["mitigated_at"]),
        "resolvedAt": _time(row["resolved_at"]),
        "closedAt": _time(row["closed_at"]),
        "resolvedBy": row["resolved_by"],
        "reopenCount": row["reopen_count"],
        "previousIncidentId": _id(row["previous_incident_id"]),
    }


# ------------------------------------------------------------------ the list
@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    count: int | None = None


def _list_args(
    tenant: str, flt: IncidentFilter, key: tuple[Any, ...] | None, limit: int
) -> list[Any]:
    return [tenant, *page_bounds(flt, key), *flt.filter_args(), limit]


async def list_incidents(
    conn: Connection,
    tenant: str,
    flt: IncidentFilter,
    *,
    limit: int = 25,
    cursor: str | None = None,
    count: bool = False,
) -> Page:
    """One page of `tenant`'s incidents matching `flt`, newest first in `flt.sort`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadReadRequest("invalid_parameter", f"limit must be 1–{MAX_LIMIT}")
    key = decode_cursor(flt, cursor) if cursor else None
    rows = await conn.fetch(LIST_SQL[flt.sort], *_list_args(tenant, flt, key, limit + 1))
    items = [incident_item(r) for r in rows[:limit]]
    next_cursor = encode_cursor(flt, rows[limit - 1]) if len(rows) > limit else None
    total = await count_incidents(conn, tenant, flt) if count else None
    return Page(items, next_cursor, total)


async def count_incidents(conn: Connection, tenant: str, flt: IncidentFilter) -> int:
    # The count's statement types the page parameters as a time sort's: any will do.
    unsorted = replace(flt, sort="-lastSeen")
    total = await conn.fetchval(COUNT_SQL, *_list_args(tenant, unsorted, None, 0))
    return int(total)


async def iter_rows(
    conn: Connection, tenant: str, flt: IncidentFilter, *, page: int = EXPORT_PAGE
) -> AsyncGenerator[asyncpg.Record]:
    """Every matching row (the list's columns), fetched `page` rows at a time by keyset; run
    it inside `reading(..., snapshot=True)` for one consistent view."""
    key: tuple[Any, ...] | None = None
    while True:
        rows = await conn.fetch(LIST_SQL[flt.sort], *_list_args(tenant, flt, key, page))
        for row in rows:
            yield row
        if len(rows) < page:
            return
        key = sort_key(flt, rows[-1])


async def iter_incidents(
    conn: Connection, tenant: str, flt: IncidentFilter, *, page: int = EXPORT_PAGE
) -> AsyncIterator[dict[str, Any]]:
    """Every match as list items (the CSV export)."""
    async for row in iter_rows(conn, tenant, flt, page=page):
        yield incident_item(row)


# ------------------------------------------------------------------ detail and timeline
async def get_incident(
    conn: Connection, tenant: str, incident: uuid.UUID, *, evidence_payloads: bool = False
) -> dict[str, Any] | None:
    """The incident, its evidence and its neighbouring episodes; None when `tenant` has none."""
    row = await conn.fetchrow(INCIDENT_SQL, tenant, incident)
    if row is None:
        return None
    nxt = await conn.fetchval(_SQL["next_episode"], tenant, row["incident_key"], row["episode"])
    evidence = await conn.fetch(_SQL["evidence_of"], tenant, incident, evidence_payloads)
    detail = incident_item(row)
    detail["classification"] = json.loads(row["classification"])
    detail["sourcePrimary"] = json.loads(row["source_primary"])
    detail["lastSeq"] = row["last_seq"]
    detail["episodes"] = {"previous": _id(row["previous_incident_id"]), "next": _id(nxt)}
    detail["evidence"] = [_evidence(e, evidence_payloads) for e in evidence]
    return detail


def _evidence(row: asyncpg.Record, with_payload: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": row["kind"],
        "ref": row["ref"],
        "sha256": row["sha256"],
        "observedAt": _time(row["observed_at"]),
    }
    if with_payload:
        item["payload"] = json.loads(row["payload"])
    return item


async def timeline(
    conn: Connection,
    tenant: str,
    incident: uuid.UUID,
    *,
    after_seq: int = 0,
    limit: int = 100,
    types: Sequence[str] = (),
) -> list[dict[str, Any]] | None:
    """The incident's events in seq order after `after_seq`; None when `tenant` has no such
    incident."""
    if not await conn.fetchval(_SQL["incident_exists"], tenant, incident):
        return None
    rows = await conn.fetch(
        _SQL["timeline_of"], tenant, incident, after_seq, list(types) or None, limit
    )
    return [_timeline_item(r) for r in rows]


def _loaded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _timeline_item(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "type": row["type"],
        "occurredAt": _time(row["occurred_at"]),
        "recordedAt": _time(row["recorded_at"]),
        "cause": _loaded(row["cause"]),
        "actor": _loaded(row["actor"]),
        "rationale": row["rationale"],
        "note": row["note"],
        "changes": _loaded(row["changes"]),
        "hash": row["hash"],
        "prevHash": row["prev_hash"],
    }


async def incident_exists(conn: Connection, tenant: str, incident: uuid.UUID) -> bool:
    """Whether the tenant has an incident of this id."""
    return bool(await conn.fetchval(_SQL["incident_exists"], tenant, incident))


async def get_receipt(conn: Connection, tenant: str, command_id: str) -> dict[str, Any] | None:
    """The stored outcome of a command (`command_receipts`), or None."""
    row = await conn.fetchrow(_SQL["receipt_of"], tenant, command_id)
    if row is None:
        return None
    result = json.loads(row["result"])
    if not isinstance(result, dict):
        result = {}
    applied = row["outcome"] == "applied"
    answer: dict[str, Any] = {
        "commandId": row["command_id"],
        "type": row["type"],
        "incidentId": _id(row["incident_id"]),
        "outcome": row["outcome"],
        "reason": row["reason"],
        "eventId": _id(row["event_id"]),
        "eventSeq": result.get("seq") if applied else None,
        "status": result.get("status"),
        "recordedAt": _time(row["recorded_at"]),
    }
    return answer
