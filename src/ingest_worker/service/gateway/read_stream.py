"""`GET /v1/stream`: Server-Sent Events of the tenant's incident events.

`id:` is the event's position in its tenant's stream (`store.stream.StreamPosition`), an order
that follows commit visibility: an event gets a position only once no write transaction that
could still come before it is open. Live events come from the process's one fan-out
(`read_fanout`), which hands them out in that order. A client that sends `Last-Event-ID` gets
first, from PostgreSQL, every event after that position up to where its live feed starts
(within the retention window; older, or more than the replay bound behind: one `event: resync`
and the present), then the live ones: nothing lost, nothing repeated, whatever order concurrent
write transactions committed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ingest_worker.service.gateway.principal import Principal, require
from ingest_worker.service.gateway.read_backend import (
    ProblemRoute,
    ReadBackend,
    backend_of,
    problem_responses,
    refusal,
)
from ingest_worker.service.gateway.read_events import (
    CUT_OFF,
    StreamEvent,
    StreamFilter,
    Subscriber,
    _CutOff,
)
from ingest_worker.service.gateway.read_fanout import EventFanout
from ingest_worker.service.gateway.read_models import SeverityName, StatusName
from ingest_worker.store import reads
from ingest_worker.store import stream as store_stream
from ingest_worker.store.stream import StreamPosition

__all__ = [
    "CUT_OFF",
    "EventFanout",
    "StreamEvent",
    "StreamFilter",
    "Subscriber",
    "replay",
    "tenant_events",
]

log = structlog.get_logger("ingest_worker.gateway")

#: Replay page size (rows per query while resuming).
REPLAY_PAGE = 500


async def _resolved(
    backend: ReadBackend, tenant: str, after: StreamPosition
) -> StreamPosition | None:
    """`after` with its transaction id (a three-part position names it by its event)."""
    if after.resolved:
        return after
    async with reads.reading(backend.pool, tenant) as conn:
        return await store_stream.event_tx(conn, tenant, after)


async def replay(
    backend: ReadBackend,
    tenant: str,
    after: StreamPosition,
    upto: StreamPosition,
    flt: StreamFilter,
) -> AsyncIterator[StreamEvent | None]:
    """The events after `after` and up to `upto`, from PostgreSQL, in stream order; a None
    means the client is too far behind (resync)."""
    config = backend.config
    not_before = datetime.now(UTC) - timedelta(hours=config.stream_retention_hours)
    position = await _resolved(backend, tenant, after) if after.recorded_at >= not_before else None
    if position is None:
        yield None
        return
    sent = 0
    while position < upto:
        async with reads.reading(backend.pool, tenant) as conn:
            rows = await store_stream.events_between(conn, tenant, position, upto, REPLAY_PAGE)
        for row in rows:
            sent += 1
            if sent > config.stream_replay_max_events:
                yield None
                return
            event = StreamEvent.from_row(tenant, row)
            if flt.admits(event):
                yield event
        if len(rows) < REPLAY_PAGE:
            return
        position = rows[-1].position


# ------------------------------------------------------------------ the route
router = APIRouter(route_class=ProblemRoute, tags=["stream"])

#: Sent first: the stream is open (and the client subscribed) from here on.
OPENED = ": open\n\n"
RESYNC = "event: resync\ndata: {}\n\n"
STREAM_PARAMETERS = frozenset({"status", "severity", "incident"})
READY_WAIT_SECONDS = 5.0


async def tenant_events(
    backend: ReadBackend, tenant: str, after: StreamPosition | None, flt: StreamFilter
) -> AsyncGenerator[StreamEvent | str, None]:
    """The tenant's events that `flt` admits, each position once and in stream order: those
    after `after` replayed from the store up to where the live feed took over, then the live
    ones; between them, the control frames to send as they are (opened, resync when `after` is
    past the replay limit, keep-alive). Ends when the client is cut off."""
    subscriber, present = await backend.fanout.subscribe(tenant)
    try:
        yield OPENED
        floor = present
        if after is not None:
            floor = max(after, present) if after.resolved else present
            async for event in replay(backend, tenant, after, present, flt):
                if event is None:
                    floor = present
                    yield RESYNC
                    break
                yield event
        keepalive = backend.config.stream_keepalive_seconds
        while True:
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), keepalive)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if isinstance(item, _CutOff):
                return
            # Live events come in stream order; a client that resumed from a position another
            # gateway had reached first skips what it was sent there.
            if item.position is not None and item.position <= floor:
                continue
            if flt.admits(item):
                yield item
    finally:
        backend.fanout.unsubscribe(subscriber)


async def _frames(
    backend: ReadBackend, tenant: str, after: StreamPosition | None, flt: StreamFilter
) -> AsyncIterator[str]:
    async with contextlib.aclosing(tenant_events(backend, tenant, after, flt)) as items:
        async for item in items:
            yield item if isinstance(item, str) else item.frame()


@router.get(
    "/v1/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `event:` the CloudEvents type, `id:` a "
            "resumable position, `data:` the event body; `event: resync` when "
            "Last-Event-ID is too old to resume; a comment every 15 s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 403, 503),
    },
    summary="Live incident events (Server-Sent Events), resumable with Last-Event-ID",
)
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(require("read"))],
    backend: Annotated[ReadBackend, Depends(backend_of)],
    status: Annotated[list[StatusName] | None, Query(max_length=20)] = None,
    severity: Annotated[list[SeverityName] | None, Query(max_length=2)] = None,
    incident: Annotated[list[uuid.UUID] | None, Query(max_length=100)] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=128, description="Resume after it.")
    ] = None,
) -> StreamingResponse:
    unknown = sorted(set(request.query_params) - STREAM_PARAMETERS)
    if unknown:
        raise refusal(400, "unknown_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    after = StreamPosition.parse(last_event_id) if last_event_id else None
    if backend.fanout.clients >= backend.config.stream_max_clients:
        raise refusal(503, "too_many_streams", "too many open streams: retry later",
                           {"Retry-After": "5"})  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(backend.fanout.ready.wait(), READY_WAIT_SECONDS)
    flt = StreamFilter(
        statuses=frozenset(status or ()),
        severities=frozenset(severity or ()),
        incidents=frozenset(str(i) for i in incident or ()),
    )
    return StreamingResponse(
        _frames(backend, principal.tenant, after, flt),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
