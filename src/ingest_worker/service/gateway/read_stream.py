"""`GET /v1/stream`: Server-Sent Events of the tenant's incident events.

One consumer of `incident.events` per gateway process (no consumer group: every gateway sees
every record, from the end of the topic at start-up) fans each record out in memory to the
connected clients of its tenant, each behind a bounded queue: a client that falls further
behind than the queue is cut off (its connection ends) instead of growing memory, and comes
back with `Last-Event-ID`.

`id:` is the event's position in its tenant's recording order (`StreamPosition`). A client
that sends `Last-Event-ID` gets first, from PostgreSQL, every event recorded after that
position (within the retention window; older, or more than the replay bound behind: one
`event: resync` and the present), then the live events it has not been sent yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ingest_worker.delivery.outbox import event_value
from ingest_worker.service.gateway.principal import Principal, require
from ingest_worker.service.gateway.read_backend import (
    ProblemRoute,
    ReadBackend,
    backend_of,
    problem_responses,
    refusal,
)
from ingest_worker.service.gateway.read_models import SeverityName, StatusName
from ingest_worker.service.kafka_clients import client_options
from ingest_worker.store import reads
from ingest_worker.store.reads import StreamPosition

log = structlog.get_logger("ingest_worker.gateway")

DEFAULT_TENANT = "default"
#: Replay page size (rows per query while resuming).
REPLAY_PAGE = 500


@dataclass(frozen=True, slots=True)
class StreamEvent:
    tenant: str
    event_id: str
    position: StreamPosition | None
    type: str
    data: str
    incident_id: str
    status: str | None
    severity: str | None

    @classmethod
    def from_body(
        cls, tenant: str, body: dict[str, Any], data: str, position: StreamPosition | None
    ) -> StreamEvent:
        snapshot = body.get("snapshot") if isinstance(body.get("snapshot"), dict) else {}
        assert isinstance(snapshot, dict)
        return cls(
            tenant=tenant,
            event_id=str(body.get("id", "")),
            position=position,
            type=str(body.get("type", "")),
            data=data,
            incident_id=str(body.get("incident_id", "")),
            status=snapshot.get("status"),
            severity=snapshot.get("severity"),
        )

    def frame(self) -> str:
        lines = [f"event: {self.type}"]
        if self.position is not None:
            lines.append(f"id: {self.position.token()}")
        lines.append(f"data: {self.data}")
        return "\n".join(lines) + "\n\n"


@dataclass(frozen=True, slots=True)
class StreamFilter:
    statuses: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    incidents: frozenset[str] = frozenset()

    def admits(self, event: StreamEvent) -> bool:
        return (
            (not self.statuses or event.status in self.statuses)
            and (not self.severities or event.severity in self.severities)
            and (not self.incidents or event.incident_id in self.incidents)
        )


class _CutOff:
    """Put in a client's queue in place of what it could not keep up with."""


CUT_OFF = _CutOff()


class Subscriber:
    """One connected client: a bounded queue of its tenant's live events."""

    def __init__(self, tenant: str, size: int) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[StreamEvent | _CutOff] = asyncio.Queue(size)
        self.cut_off = False

    def offer(self, event: StreamEvent) -> None:
        if self.cut_off:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """End this client's stream: free what it has not read, then tell it to stop."""
        self.cut_off = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CUT_OFF)


def _tenant_of(headers: Sequence[tuple[str, bytes]] | None, body: dict[str, Any]) -> str:
    for name, value in headers or ():
        if name in ("tenant", "ce_tenant") and value:
            return value.decode("utf-8", "replace")
    tenant = body.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT


class EventFanout:
    """The process's one consumer of `incident.events` and its subscribers."""

    def __init__(self, backend: ReadBackend) -> None:
        self._backend = backend
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        #: Set once the consumer is positioned at the end of every partition.
        self.ready = asyncio.Event()
        self.delivered = 0

    @property
    def clients(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def subscribe(self, tenant: str) -> Subscriber:
        subscriber = Subscriber(tenant, self._backend.config.stream_queue_events)
        self._subscribers.setdefault(tenant, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = self._subscribers.get(subscriber.tenant)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._subscribers[subscriber.tenant]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="read-stream-fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.close_all()

    def close_all(self) -> None:
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: reconnect, the clients stay
                log.warning("read_stream_consumer_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        settings = self._backend.settings
        topic = settings.topic_incident_events
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            client_id=f"{settings.client_id}-gateway-stream",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            partitions = await self._partitions(consumer, topic)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the end offsets: "the present" is now
                await consumer.position(tp)
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    await self._dispatch(records)
        finally:
            self.ready.clear()
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            await asyncio.sleep(0.5)

    async def _dispatch(self, records: Sequence[Any]) -> None:
        by_tenant: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for record in records:
            try:
                text = record.value.decode("utf-8")
                body = json.loads(text)
            except (AttributeError, UnicodeDecodeError, ValueError):
                continue
            if not isinstance(body, dict):
                continue
            tenant = _tenant_of(record.headers, body)
            if tenant in self._subscribers:
                by_tenant.setdefault(tenant, []).append((body, text))
        for tenant, items in by_tenant.items():
            positions = await self._positions(tenant, items)
            for body, text in items:
                event = StreamEvent.from_body(
                    tenant, body, text, positions.get(str(body.get("id")))
                )
                for subscriber in list(self._subscribers.get(tenant, ())):
                    subscriber.offer(event)
                self.delivered += 1

    async def _positions(
        self, tenant: str, items: list[tuple[dict[str, Any], str]]
    ) -> dict[str, StreamPosition]:
        ids = []
        for body, _ in items:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                ids.append(uuid.UUID(str(body.get("id"))))
        try:
            async with reads.reading(self._backend.pool, tenant) as conn:
                found = await reads.event_positions(conn, tenant, ids)
        except Exception as exc:  # delivered without a position rather than not at all
            log.warning("read_stream_positions_failed", error=type(exc).__name__)
            return {}
        return {str(k): v for k, v in found.items()}


async def replay(
    backend: ReadBackend, tenant: str, after: StreamPosition, flt: StreamFilter
) -> AsyncIterator[StreamEvent | None]:
    """The events recorded after `after`, from PostgreSQL, oldest first; a None means the
    client is too far behind (resync)."""
    config = backend.config
    not_before = datetime.now(UTC) - timedelta(hours=config.stream_retention_hours)
    if after.recorded_at < not_before:
        yield None
        return
    sent, position = 0, after
    while True:
        async with reads.reading(backend.pool, tenant) as conn:
            rows = await reads.events_after(conn, tenant, position, not_before, REPLAY_PAGE)
        for row_position, _type, event_hash, payload in rows:
            sent += 1
            if sent > config.stream_replay_max_events:
                yield None
                return
            data = event_value(payload, event_hash, tenant).decode("utf-8")
            event = StreamEvent.from_body(tenant, json.loads(data), data, row_position)
            if flt.admits(event):
                yield event
        if len(rows) < REPLAY_PAGE:
            return
        position = rows[-1][0]


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
    """The tenant's events that `flt` admits: those after `after` replayed from the store, then
    the live ones, none twice; between them, the control frames to send as they are (opened,
    resync when `after` is past the replay limit, keep-alive). Ends when the client is cut off."""
    subscriber = backend.fanout.subscribe(tenant)
    try:
        yield OPENED
        replayed: set[str] = set()
        if after is not None:
            async for event in replay(backend, tenant, after, flt):
                if event is None:
                    replayed.clear()
                    yield RESYNC
                    break
                replayed.add(event.event_id)
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
            if item.event_id in replayed:
                replayed.discard(item.event_id)
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
