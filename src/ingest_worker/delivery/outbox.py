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
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from asyncpg.pool import PoolConnectionProxy

from ingest_worker import tracing
from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.errors import TransientError
from ingest_worker.delivery.batches import Backoff, retry_transient
from ingest_worker.metrics import Metrics

log = structlog.get_logger("ingest_worker.outbox")

NOTIFY_CHANNEL = "ingest_outbox"
#: The producer's default partitioner (murmur2 of the key, as Kafka's Java client): an event goes
#: to the partition `producer.send(key=incident id)` would choose.
_PARTITIONER = DefaultPartitioner()
BROKER_ACK_TIMEOUT = 15.0

#: The rows of the lanes no other publisher holds: the lanes are locked (`FOR UPDATE SKIP
#: LOCKED`, until the round's transaction ends) and read in one statement. The round's rows are
#: picked from the outbox alone (ids, ORDER BY … LIMIT) before any payload is read: with the
#: payload in the same select list, PostgreSQL rendered the payload of every backlog row before
#: the top-N sort kept `$1` of them (325 µs per published row at a 15,700-row backlog, 20 µs
#: so). Each event is then one probe of its primary key (`LATERAL … LIMIT 1`): with a plain
#: join, stale statistics let the planner hash the whole `incident_events` table.
FETCH_ROUND = """
WITH lanes AS MATERIALIZED (
    SELECT lane FROM outbox_lanes ORDER BY lane FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT o.tenant, o.event_id, o.incident_id, o.seq, o.traceparent
    FROM outbox o
    WHERE o.lane IN (SELECT l.lane FROM lanes AS l)
    ORDER BY o.incident_id, o.seq
    LIMIT $1
)
SELECT e.id, e.incident_id, e.seq, e.type, e.hash, e.payload::text AS payload_text,
       e.payload->>'occurred_at' AS occurred_at, e.payload->>'incident_key' AS incident_key,
       p.traceparent, p.tenant
FROM picked AS p
CROSS JOIN LATERAL (
    SELECT * FROM incident_events AS x WHERE x.tenant = p.tenant AND x.id = p.event_id LIMIT 1
) AS e
ORDER BY p.incident_id, p.seq
"""
_DELETE = """
DELETE FROM outbox AS o USING unnest($1::text[], $2::uuid[]) AS u(tenant, event_id)
WHERE o.tenant = u.tenant AND o.event_id = u.event_id
"""
_BACKLOG = "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM command_results_outbox)"
_FETCH_RESULTS = """
SELECT tenant, id, command_id, outcome, subject, payload::text AS payload_text,
       occurred_at
FROM command_results_outbox
ORDER BY created_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_DELETE_RESULTS = """
DELETE FROM command_results_outbox AS o USING unnest($1::text[], $2::uuid[]) AS u(tenant, id)
WHERE o.tenant = u.tenant AND o.id = u.id
"""


def cloudevent_headers(
    row: asyncpg.Record | Mapping[str, Any], source: bytes
) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 Kafka binding, binary mode, from an outbox row; the tenant both as the
    CloudEvents extension `tenant` (`ce_tenant`) and as the plain `tenant` header."""
    tenant = str(row["tenant"]).encode()
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(row["id"]).encode()),
        ("ce_source", source),
        ("ce_type", str(row["type"]).encode()),
        ("ce_time", str(row["occurred_at"]).encode()),
        ("ce_subject", str(row["incident_key"]).encode()),
        ("ce_tenant", tenant),
        ("content-type", b"application/json"),
        ("tenant", tenant),
    ]


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
        pool: asyncpg.Pool,
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
        self._pool = pool
        self._producer = producer
        self._topic = topic
        self._results_topic = results_topic
        self._source = ce_source
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._retry = (retry_initial_seconds, retry_max_seconds)
        self._wake = asyncio.Event()
        self._listener: PoolConnectionProxy | None = None
        self.published = 0
        self.results_published = 0

    def wake(self) -> None:
        self._wake.set()

    async def publish_round(self) -> int:
        """Publish up to one batch of pending events; return how many were published."""
        try:
            async with self._pool.acquire(timeout=10) as conn, conn.transaction():
                results = await self._publish_results(conn)
                rows = await conn.fetch(FETCH_ROUND, self._batch_size)
                if not rows:
                    return results
                with _publish_span(self._topic, rows):
                    await self._send(rows)
                await conn.execute(_DELETE, [r["tenant"] for r in rows], [r["id"] for r in rows])
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise TransientError(f"outbox database error: {exc!r}") from exc
        for row in rows:
            self._metrics.events_published.labels(type=row["type"]).inc()
        self.published += len(rows)
        return len(rows)

    async def _publish_results(self, conn: Any) -> int:
        """Publish pending command outcomes to the results topic, at least once."""
        if self._results_topic is None:
            return 0
        rows = await conn.fetch(_FETCH_RESULTS, self._batch_size)
        if not rows:
            return 0
        with _publish_span(self._results_topic, rows):
            await self._send_results(rows)
        await conn.execute(_DELETE_RESULTS, [r["tenant"] for r in rows], [r["id"] for r in rows])
        self.results_published += len(rows)
        return len(rows)

    async def _send_results(self, rows: Sequence[asyncpg.Record]) -> None:
        try:
            source = self._source.encode()
            futures = [
                await self._producer.send(
                    self._results_topic,
                    value=row["payload_text"].encode(),
                    key=str(row["command_id"]).encode(),
                    headers=[
                        ("ce_specversion", b"1.0"),
                        ("ce_id", str(row["id"]).encode()),
                        ("ce_source", source),
                        ("ce_type", f"incident.command.{row['outcome']}".encode()),
                        ("ce_time", utc_timestamp(row["occurred_at"]).encode()),
                        ("ce_subject", str(row["subject"]).encode()),
                        ("ce_tenant", row["tenant"].encode()),
                        ("content-type", b"application/json"),
                        ("tenant", row["tenant"].encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.wait_for(asyncio.gather(*futures), BROKER_ACK_TIMEOUT)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise TransientError(f"command result publish failed: {exc!r}") from exc

    async def _send(self, rows: Sequence[asyncpg.Record]) -> None:
        """Publish a round's events: one record batch per partition (a new one when full), each
        event in the partition the producer's default partitioner gives its key.

        `producer.send` per event cost ~13 µs of the worker's CPU (a future, the metadata and
        partition look-ups, per record); appending to a batch builder per partition costs a few.
        Order per incident is kept: its events share a key, so a partition, and are appended in
        `seq` order to batches submitted in order."""
        try:
            source = self._source.encode()
            partitions = sorted(await self._producer.partitions_for(self._topic))
            builders: dict[int, Any] = {}
            futures = []
            for row in rows:
                headers = cloudevent_headers(row, source)
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

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        conn = await self._pool.acquire(timeout=10)
        # A dedicated connection: pooled connections reset their listeners on release.
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._listener = conn

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _release_listener(self) -> None:
        if self._listener is not None:
            conn, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=2)

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until `stopping` is set, then return (the caller flushes with `drain`)."""
        try:
            while not stopping.is_set():
                with contextlib.suppress(Exception):
                    await self._listen()
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
            await self._release_listener()

    async def _refresh_backlog(self) -> None:
        with contextlib.suppress(Exception):
            async with self._pool.acquire(timeout=1) as conn:
                self._metrics.outbox_backlog.set(await conn.fetchval(_BACKLOG, timeout=1))


@contextlib.contextmanager
def _publish_span(topic: str, rows: Sequence[asyncpg.Record]) -> Iterator[None]:
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


def decode_event(value: bytes) -> dict[str, Any]:
    """Parse an `incident.events` record value (for tests and tools)."""
    body = json.loads(value)
    assert isinstance(body, dict)
    return body
