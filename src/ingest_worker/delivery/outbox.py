"""The outbox publisher: moves committed events from PostgreSQL to the `incident.events` topic.

Order and safety with several replicas: every outbox row belongs to a lane (a hash of its incident
id). A publisher round locks the free lanes with `FOR UPDATE SKIP LOCKED`, publishes their rows in
`seq` order per incident, waits for every broker acknowledgement and only then deletes the rows,
all in one transaction. Two publishers never hold the same lane, so one incident's events never
race each other; a crash before the delete republishes the same events with the same `ce_id`.

Wakes on `LISTEN ingest_outbox` (notified by the batch transaction on commit), and polls as a
fallback in case a notification is lost (e.g. while the listening connection reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from ingest_worker import tracing
from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.errors import TransientError
from ingest_worker.delivery.retry import Backoff, retry_transient
from ingest_worker.metrics import Metrics
from ingest_worker.store.outbox import OutboxRound, OutboxRow, OutboxStore

log = structlog.get_logger("ingest_worker.outbox")

#: The producer's default partitioner (murmur2 of the key, as Kafka's Java client): an event goes
#: to the partition `producer.send(key=incident id)` would choose.
_PARTITIONER = DefaultPartitioner()
BROKER_ACK_TIMEOUT = 15.0


def cloudevent_headers(
    *, event_id: object, event_type: str, time: str, subject: object, tenant: str, source: bytes
) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 Kafka binding, binary mode; the tenant both as the CloudEvents extension
    `tenant` (`ce_tenant`) and as the plain `tenant` header."""
    tenant_bytes = tenant.encode()
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(event_id).encode()),
        ("ce_source", source),
        ("ce_type", event_type.encode()),
        ("ce_time", time.encode()),
        ("ce_subject", str(subject).encode()),
        ("ce_tenant", tenant_bytes),
        ("content-type", b"application/json"),
        ("tenant", tenant_bytes),
    ]


def event_headers(row: OutboxRow, source: bytes) -> list[tuple[str, bytes]]:
    """The CloudEvents headers of an event row of the outbox."""
    return cloudevent_headers(
        event_id=row["id"],
        event_type=str(row["type"]),
        time=str(row["occurred_at"]),
        subject=row["incident_key"],
        tenant=str(row["tenant"]),
        source=source,
    )


def result_headers(row: OutboxRow, source: bytes) -> list[tuple[str, bytes]]:
    """The CloudEvents headers of a command outcome row of the outbox."""
    return cloudevent_headers(
        event_id=row["id"],
        event_type=f"incident.command.{row['outcome']}",
        time=utc_timestamp(row["occurred_at"]),
        subject=row["subject"],
        tenant=str(row["tenant"]),
        source=source,
    )


def event_value(payload_text: str, event_hash: str, tenant: str) -> bytes:
    """The Kafka value: the stored event body with `hash` and `tenant` added, without
    re-parsing the body (the tenant is a column; the hashed body binds it through the
    incident id, which is derived from it)."""
    body = payload_text.strip()
    if not body.startswith("{") or body == "{}":
        raise ValueError("an event payload is a non-empty JSON object")
    return b'{"hash":"%s","tenant":"%s",%s' % (
        event_hash.encode(),
        tenant.encode(),
        body[1:].encode(),
    )


class OutboxPublisher:
    """Publishes committed events, in `seq` order per incident, at least once."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        producer: AIOKafkaProducer,
        topic: str,
        ce_source: str,
        results_topic: str | None = None,
        metrics: Metrics,
        batch_size: int,
        poll_seconds: float,
        retry_initial_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic = topic
        self._results_topic = results_topic
        self._source = ce_source
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._retry = (retry_initial_seconds, retry_max_seconds)
        self._wake = asyncio.Event()
        self.published = 0
        self.results_published = 0

    def wake(self) -> None:
        self._wake.set()

    async def publish_round(self) -> int:
        """Publish up to one batch of pending events; return how many were published."""
        async with self._store.round() as outbox:
            results = await self._publish_results(outbox)
            rows = await outbox.events(self._batch_size)
            if not rows:
                return results
            with _publish_span(self._topic, rows):
                await self._send(rows)
            await outbox.delete_events(rows)
        for row in rows:
            self._metrics.events_published.labels(type=row["type"]).inc()
        self.published += len(rows)
        return len(rows)

    async def _publish_results(self, outbox: OutboxRound) -> int:
        """Publish pending command outcomes to the results topic, at least once."""
        if self._results_topic is None:
            return 0
        rows = await outbox.results(self._batch_size)
        if not rows:
            return 0
        with _publish_span(self._results_topic, rows):
            await self._send_results(self._results_topic, rows)
        await outbox.delete_results(rows)
        self.results_published += len(rows)
        return len(rows)

    async def _send_results(self, topic: str, rows: Sequence[OutboxRow]) -> None:
        try:
            source = self._source.encode()
            futures = [
                await self._producer.send(
                    topic,
                    value=row["payload_text"].encode(),
                    key=str(row["command_id"]).encode(),
                    headers=result_headers(row, source),
                )
                for row in rows
            ]
            await asyncio.wait_for(asyncio.gather(*futures), BROKER_ACK_TIMEOUT)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise TransientError(f"command result publish failed: {exc!r}") from exc

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        """Publish a round's events: one record batch per partition (a new one when full), each
        event in the partition the producer's default partitioner gives its key.

        `producer.send` would create a future and look up the metadata and the partition for
        every record; a batch builder per partition does that once per batch, and appending a
        record to it is cheap.
        Order per incident is kept: its events share a key, so a partition, and are appended in
        `seq` order to batches submitted in order."""
        try:
            source = self._source.encode()
            partitions = sorted(await self._producer.partitions_for(self._topic))
            builders: dict[int, Any] = {}
            futures = []
            for row in rows:
                headers = event_headers(row, source)
                if row["traceparent"] is not None:  # the span that wrote the event
                    headers.append((tracing.TRACEPARENT, row["traceparent"].encode()))
                key = str(row["incident_id"]).encode()
                value = event_value(row["payload_text"], row["hash"], row["tenant"])
                partition = _PARTITIONER(key, partitions, partitions)
                builder = builders.get(partition)
                if builder is None:
                    builder = builders[partition] = self._producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    # Full: submit it, and start the partition's next batch with this record.
                    futures.append(await self._submit(builder, partition))
                    builder = builders[partition] = self._producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None, headers=headers)
            for partition, builder in builders.items():
                futures.append(await self._submit(builder, partition))
            await asyncio.wait_for(asyncio.gather(*futures), BROKER_ACK_TIMEOUT)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise TransientError(f"event publish failed: {exc!r}") from exc

    async def _submit(self, builder: Any, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send_batch(
            builder, self._topic, partition=partition
        )
        return future

    async def drain(self, stopping: asyncio.Event) -> int:
        """Publish until the outbox is empty (or one round comes back short)."""
        total = 0
        while True:
            published = await retry_transient(
                self.publish_round,
                what="outbox",
                backoff=Backoff(*self._retry),
                stopping=stopping,
                metrics=self._metrics,
            )
            total += published
            if published < self._batch_size:
                return total

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until `stopping` is set, then return (the caller flushes with `drain`)."""
        try:
            while not stopping.is_set():
                with contextlib.suppress(Exception):
                    await self._store.listen(self._wake.set)
                self._wake.clear()
                try:
                    published = await self.drain(stopping)
                except Exception as exc:  # ShutdownRequested or a bug: never kill the worker
                    if stopping.is_set():
                        return
                    log.error("outbox_round_failed", error=repr(exc))
                    published = 0
                if published:
                    log.debug("outbox_published", events=published)
                await self._refresh_backlog()
                if stopping.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stopping.wait())
                    try:
                        await asyncio.wait(
                            {waiter, stopper},
                            timeout=self._poll,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiter.cancel()
                        stopper.cancel()
        finally:
            await self._store.unlisten()

    async def _refresh_backlog(self) -> None:
        with contextlib.suppress(Exception):
            self._metrics.outbox_backlog.set(await self._store.backlog())


@contextlib.contextmanager
def _publish_span(topic: str, rows: Sequence[OutboxRow]) -> Iterator[None]:
    """`ingest.outbox.publish`: one round's records to `topic`, linked to the spans that wrote
    the events (their stored `traceparent`), with the incidents they are about."""
    if not tracing.active():
        yield
        return
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.batch.message_count": len(rows),
    }
    stored = [tracing.stored_context(r.get("traceparent")) for r in rows]
    kind = tracing.SpanKind.PRODUCER
    with tracing.span(
        "ingest.outbox.publish", kind=kind, attributes=attributes, links=tracing.links(stored)
    ) as span:
        tracing.set_incidents(
            span,
            keys=(r.get("incident_key") or r.get("subject") for r in rows),
            ids=(str(r["incident_id"]) for r in rows if r.get("incident_id") is not None),
        )
        yield
