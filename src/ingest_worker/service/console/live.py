"""`GET /console/stream`: the list's live rows (Server-Sent Events for htmx's SSE extension).

It listens to the same fan-out of `incident.events` as `/v1/stream` and, for each event of the
visitor's tenant, runs the list's own query narrowed to that incident: an incident that
matches the page's filters is sent as its rendered row (`event: incident`, replacing the row
already shown or arriving on top); one that no longer matches is sent as an empty row marked
`data-gone`, which removes it. The page's form is never touched.

Each frame's `id:` is the event's stream position: when the connection drops, the browser
comes back with `Last-Event-ID` and gets, from PostgreSQL, the rows of what it missed (as
`/v1/stream` replays them); too far behind, it gets `event: resync` and the page reloads its
rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from ingest_worker.service.console.core import console_of, url_tenant
from ingest_worker.service.console.views import ListQuery, parse_query
from ingest_worker.service.gateway.read_backend import ReadBackend
from ingest_worker.service.gateway.read_stream import (
    READY_WAIT_SECONDS,
    StreamEvent,
    StreamFilter,
    tenant_events,
)
from ingest_worker.service.gateway.read_stream import RESYNC as STREAM_RESYNC
from ingest_worker.store import reads
from ingest_worker.store.reads import BadReadRequest, StreamPosition

log = structlog.get_logger("ingest_worker.console")
router = APIRouter(include_in_schema=False)


def _incident_key(event: StreamEvent) -> str | None:
    try:
        body = json.loads(event.data)
    except ValueError:
        return None
    key = body.get("incident_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def sse_frame(name: str, html: str, position: StreamPosition | None = None) -> str:
    lines = [line for line in html.splitlines() if line.strip()] or [""]
    identity = f"id: {position.token()}\n" if position is not None else ""
    return f"event: {name}\n{identity}" + "".join(f"data: {line}\n" for line in lines) + "\n"


RESYNC = "event: resync\ndata: \n\n"


async def _row(
    backend: ReadBackend, tenant: str, query: ListQuery, event: StreamEvent
) -> dict[str, Any] | None:
    """The event's incident as the page's list would show it, or None if it does not match."""
    key = _incident_key(event)
    if key is None or (query.flt.incident_keys and key not in query.flt.incident_keys):
        return None
    narrowed = replace(query.flt, incident_keys=(key,))
    async with reads.reading(backend.pool, tenant) as conn:
        page = await reads.list_incidents(conn, tenant, narrowed, limit=reads.MAX_LIMIT)
    return next((i for i in page.items if i["id"] == event.incident_id), None)


async def _rendered(
    request: Request, backend: ReadBackend, tenant: str, query: ListQuery, event: StreamEvent
) -> str:
    templates = console_of(request).templates
    row = await _row(backend, tenant, query, event)
    if row is None:
        html = templates.get_template("_gone.html").render(incident_id=event.incident_id)
    else:
        html = templates.get_template("_row.html").render(
            item=row, tenant_in_url=query.tenant, live=True
        )
    return sse_frame("incident", html, event.position)


async def _frames(
    request: Request,
    backend: ReadBackend,
    tenant: str,
    query: ListQuery,
    after: StreamPosition | None,
) -> AsyncIterator[str]:
    try:
        async with contextlib.aclosing(
            tenant_events(backend, tenant, after, StreamFilter())
        ) as items:
            async for item in items:
                if item == STREAM_RESYNC:
                    yield RESYNC
                elif isinstance(item, str):
                    yield item
                else:
                    yield await _rendered(request, backend, tenant, query, item)
    except Exception as exc:  # a read failing ends this stream; the browser comes back
        log.warning("console_stream_read_failed", error=type(exc).__name__)


@router.get("/console/stream")
async def stream(request: Request) -> Response:
    console = console_of(request)
    visitor = console.sessions.visitor(request)
    backend = getattr(request.app.state, "read_backend", None)
    if visitor.principal is None:
        return PlainTextResponse("sign in first", status_code=401)
    if not isinstance(backend, ReadBackend):
        return PlainTextResponse("not started", status_code=503)
    if backend.fanout.clients >= backend.config.stream_max_clients:
        return PlainTextResponse("too many streams", status_code=503,
                                 headers={"Retry-After": "5"})  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(backend.fanout.ready.wait(), READY_WAIT_SECONDS)
    query = parse_query(request.query_params, url_tenant(visitor))
    last = request.headers.get("last-event-id")
    try:
        after = StreamPosition.parse(last[:128]) if last else None
    except BadReadRequest:
        after = None  # not a position of ours: start at the present
    response = StreamingResponse(
        _frames(request, backend, visitor.principal.tenant, query, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    return console.sessions.write(visitor, response)
