"""The read API (`router`): the incident list, detail and timeline, lifecycle commands and
their receipts, and the live stream. Every route needs a scope (`read`, or `command` to post a
command) and sees only its credential's tenant: another tenant's incident is not found.

Queries are `store.reads`, shared with the console and the CLI.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ingest_worker.service.gateway.principal import Principal, require
from ingest_worker.service.gateway.read_backend import (
    ProblemRoute,
    ReadBackend,
    backend_of,
    problem_responses,
    refusal,
)
from ingest_worker.service.gateway.read_commands import router as commands_router
from ingest_worker.service.gateway.read_models import (
    EventType,
    IncidentDetail,
    IncidentPage,
    SeverityName,
    StatusName,
    TimelinePage,
)
from ingest_worker.service.gateway.read_stream import router as stream_router
from ingest_worker.sources.wire import Timestamp
from ingest_worker.store import reads
from ingest_worker.store.cursors import SORTS, TIME_FIELDS, IncidentFilter

router = APIRouter(route_class=ProblemRoute, tags=["incidents"])

MAX_VALUES = 20
#: No NUL: PostgreSQL text cannot hold one.
NO_NUL = r"^[^\x00]+$"
Text = Annotated[str, Query(min_length=1, max_length=512, pattern=NO_NUL)]
Sort = Literal[SORTS]  # type: ignore[valid-type]
TimeField = Literal[TIME_FIELDS]  # type: ignore[valid-type]
LIST_PARAMETERS = frozenset({
    "status", "severity", "source", "env", "correlationKey", "incidentKey", "q", "since",
    "until", "timeField", "sort", "limit", "cursor", "count",
})  # fmt: skip
READ_ERRORS = problem_responses(400, 401, 403, 503)
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
Backend = Annotated[ReadBackend, Depends(backend_of)]


def refuse_unknown_parameters(request: Request, known: frozenset[str]) -> None:
    """A misspelt filter is refused, never silently ignored (which would list everything)."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise refusal(400, "unknown_parameter", f"unknown parameter(s): {', '.join(unknown)}")


@router.get(
    "/v1/incidents",
    response_model=IncidentPage,
    responses={
        **READ_ERRORS,
        200: {
            "description": "A page of incidents (JSON), or every match as CSV "
            "(Accept: text/csv; limit and cursor do not apply).",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
    summary="List incidents: filters, sorts, keyset pages, counts, CSV export",
)
async def list_incidents(
    request: Request,
    principal: ReadPrincipal,
    backend: Backend,
    status: Annotated[list[StatusName] | None, Query(max_length=MAX_VALUES)] = None,
    severity: Annotated[list[SeverityName] | None, Query(max_length=2)] = None,
    source: Annotated[list[Text] | None, Query(max_length=MAX_VALUES)] = None,
    env: Annotated[list[Text] | None, Query(max_length=MAX_VALUES)] = None,
    correlationKey: Annotated[list[Text] | None, Query(max_length=MAX_VALUES)] = None,
    incidentKey: Annotated[list[Text] | None, Query(max_length=MAX_VALUES)] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1, max_length=200, pattern=NO_NUL, description="Title substring, any case."
        ),
    ] = None,
    since: Annotated[Timestamp | None, Query(description="Inclusive, on timeField.")] = None,
    until: Annotated[Timestamp | None, Query(description="Exclusive, on timeField.")] = None,
    timeField: TimeField = "lastSeen",
    sort: Sort = "-lastSeen",
    limit: Annotated[int, Query(ge=1, le=reads.MAX_LIMIT)] = 25,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
    count: bool = False,
) -> Response:
    refuse_unknown_parameters(request, LIST_PARAMETERS)
    flt = IncidentFilter(
        statuses=tuple(status or ()),
        severities=tuple(severity or ()),
        sources=tuple(source or ()),
        envs=tuple(env or ()),
        correlation_keys=tuple(correlationKey or ()),
        incident_keys=tuple(incidentKey or ()),
        q=q,
        since=since,
        until=until,
        time_field=timeField,
        sort=sort,
    )
    if "text/csv" in request.headers.get("accept", ""):
        return StreamingResponse(
            _csv(backend, principal.tenant, flt),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="incidents.csv"'},
        )
    async with reads.reading(backend.pool, principal.tenant) as conn:
        page = await reads.list_incidents(
            conn, principal.tenant, flt, limit=limit, cursor=cursor, count=count
        )
    body: dict[str, object] = {"items": page.items, "nextCursor": page.next_cursor}
    if count:
        body["count"] = page.count
    return JSONResponse(body)


def _csv_cell(value: object) -> object:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return "" if value is None else value


async def _csv(backend: ReadBackend, tenant: str, flt: IncidentFilter) -> AsyncIterator[str]:
    """Every match, one consistent snapshot, streamed a page at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(reads.ITEM_FIELDS)
    async with reads.reading(backend.pool, tenant, snapshot=True) as conn:
        rows = 0
        async for item in reads.iter_incidents(conn, tenant, flt):
            writer.writerow([_csv_cell(item[f]) for f in reads.ITEM_FIELDS])
            rows += 1
            if rows % 200 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


IncidentId = Annotated[uuid.UUID, Path(description="The incident's id (a UUID).")]


@router.get(
    "/v1/incidents/{incident_id}",
    response_model=IncidentDetail,
    responses=problem_responses(400, 401, 403, 404, 503),
    summary="One incident: its fields, evidence and neighbouring episodes",
)
async def get_incident(
    request: Request,
    principal: ReadPrincipal,
    backend: Backend,
    incident_id: IncidentId,
    include: Annotated[list[Literal["evidencePayloads"]] | None, Query(max_length=1)] = None,
) -> Response:
    refuse_unknown_parameters(request, frozenset({"include"}))
    async with reads.reading(backend.pool, principal.tenant) as conn:
        detail = await reads.get_incident(
            conn, principal.tenant, incident_id, evidence_payloads=bool(include)
        )
    if detail is None:
        raise refusal(404, "not_found", f"no incident {incident_id}")
    return JSONResponse(detail)


@router.get(
    "/v1/incidents/{incident_id}/timeline",
    response_model=TimelinePage,
    responses=problem_responses(400, 401, 403, 404, 503),
    summary="An incident's events in seq order",
)
async def get_timeline(
    request: Request,
    principal: ReadPrincipal,
    backend: Backend,
    incident_id: IncidentId,
    afterSeq: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[EventType] | None, Query(max_length=MAX_VALUES)] = None,
) -> Response:
    refuse_unknown_parameters(request, frozenset({"afterSeq", "limit", "type"}))
    async with reads.reading(backend.pool, principal.tenant) as conn:
        items = await reads.timeline(
            conn, principal.tenant, incident_id, after_seq=afterSeq, limit=limit,
            types=tuple(type or ()),
        )  # fmt: skip
    if items is None:
        raise refusal(404, "not_found", f"no incident {incident_id}")
    following = items[-1]["seq"] if len(items) == limit else None
    return JSONResponse({"items": items, "nextAfterSeq": following})


router.include_router(commands_router)
router.include_router(stream_router)

__all__ = ["router"]
