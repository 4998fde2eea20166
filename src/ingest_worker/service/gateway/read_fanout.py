"""The stream's live side: one consumer of `incident.events` per gateway process, fanning the
tenant's events out in memory to its connected clients.

The worker's commit notification (`LISTEN ingest_outbox`, sent by every write batch as it
commits) and the topic say *that* there are new events; PostgreSQL says *which, and in what
order*. A notification wakes every feed, a record of tenant T wakes T's feed; a feed reads from
the store every final event after the last one it fanned out (`store.stream`: commit-ordered
positions, served only below the snapshot's xmin) and offers each, in stream order, to the
tenant's subscribers. The live path thus sends exactly the sequence a resume replays, one
position after the other: a client can switch from replay to live and back without a gap or a
repeat. An event whose record arrived but that is not final yet (an older write transaction is
still open) is looked for again shortly; a sweep every second catches what nothing announced
(records missed while the consumer reconnected). Reads go in rounds, at most one per
`ROUND_SECONDS`, whatever the rate of commits.

Each client sits behind a bounded queue: one that falls further behind is cut off (its
connection ends) instead of growing memory, and comes back with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest_worker.service.gateway.read_events import StreamEvent, Subscriber
from ingest_worker.service.kafka_clients import client_options
from ingest_worker.store import reads, stream
from ingest_worker.store.outbox import NOTIFY_CHANNEL
from ingest_worker.store.stream import StreamPosition

if TYPE_CHECKING:
    from ingest_worker.service.gateway.read_backend import ReadBackend

log = structlog.get_logger("ingest_worker.gateway")

DEFAULT_TENANT = "default"
#: Rows per query while a feed catches up.
FEED_PAGE = 500
#: How soon an announced event that was not final yet is looked for again.
RETRY_SECONDS = 0.05
#: The shortest time between two rounds of reads (each reads every woken feed once).
ROUND_SECONDS = 0.05
#: Every feed reads the store this often even when the topic announced nothing.
SWEEP_SECONDS = 1.0
#: An announced event not found by then is forgotten (its feed was created after it was final).
PENDING_SECONDS = 30.0
#: Event ids a feed remembers having sent, so that a late announcement is not waited for.
RECENT_IDS = 10_000


def _tenant_of(headers: Sequence[tuple[str, bytes]] | None, body: dict[str, Any]) -> str:
    for name, value in headers or ():
        if name in ("tenant", "ce_tenant") and value:
            return value.decode("utf-8", "replace")
    tenant = body.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT


class Feed:
    """One tenant's live events: where it is in the stream, who listens, what was announced."""

    def __init__(self, cursor: StreamPosition) -> None:
        self.cursor = cursor
        self.subscribers: set[Subscriber] = set()
        #: announced event id → when (monotonic), until the store hands it out
        self.pending: dict[str, float] = {}
        self._recent: deque[str] = deque(maxlen=RECENT_IDS)
        self._recent_set: set[str] = set()

    def announce(self, event_id: str) -> None:
        if event_id not in self._recent_set:
            self.pending.setdefault(event_id, time.monotonic())

    def sent(self, event_id: str) -> None:
        self.pending.pop(event_id, None)
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(event_id)
        self._recent_set.add(event_id)

    def waiting(self) -> bool:
        """Announced events not sent yet (forgetting those announced too long ago)."""
        if self.pending:
            stale = time.monotonic() - PENDING_SECONDS
            for event_id in [k for k, at in self.pending.items() if at < stale]:
                del self.pending[event_id]
        return bool(self.pending)


class EventFanout:
    """The process's one consumer of `incident.events`, its feeds and their subscribers."""

    def __init__(self, backend: ReadBackend) -> None:
        self._backend = backend
        self._feeds: dict[str, Feed] = {}
        #: Held while a feed advances or gains a subscriber: a subscriber starts exactly at
        #: its feed's cursor.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        #: Set by a commit notification: every feed reads on the next round.
        self._committed = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Set once the consumer is positioned at the end of every partition.
        self.ready = asyncio.Event()
        self.delivered = 0

    @property
    def clients(self) -> int:
        return sum(len(f.subscribers) for f in self._feeds.values())

    async def subscribe(self, tenant: str) -> tuple[Subscriber, StreamPosition]:
        """A new subscriber of `tenant`'s live events and the position they start after."""
        subscriber = Subscriber(tenant, self._backend.config.stream_queue_events)
        async with self._lock:
            feed = self._feeds.get(tenant)
            if feed is None:
                async with reads.reading(self._backend.pool, tenant) as conn:
                    feed = Feed(await stream.head(conn, tenant))
                self._feeds[tenant] = feed
            feed.subscribers.add(subscriber)
            return subscriber, feed.cursor

    def unsubscribe(self, subscriber: Subscriber) -> None:
        feed = self._feeds.get(subscriber.tenant)
        if feed is not None:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers:
                del self._feeds[subscriber.tenant]

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="read-stream-consumer"),
            asyncio.create_task(self._pump(), name="read-stream-feeds"),
            asyncio.create_task(self._listen(), name="read-stream-commits"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.close_all()

    def close_all(self) -> None:
        for feed in self._feeds.values():
            for subscriber in feed.subscribers:
                subscriber.close()

    # -------------------------------------------------------------- the feeds
    async def _pump(self) -> None:
        last_sweep = last_round = time.monotonic()
        while True:
            waiting = any(f.waiting() for f in self._feeds.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), RETRY_SECONDS if waiting else SWEEP_SECONDS
                )
            # Commits come many times a second and each wakes every feed: one round per
            # ROUND_SECONDS at most, what arrives meanwhile joins the next.
            pause = last_round + ROUND_SECONDS - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._wake.clear()
            last_round = time.monotonic()
            sweep = self._committed or last_round - last_sweep >= SWEEP_SECONDS
            if sweep:
                last_sweep, self._committed = last_round, False
            for tenant, feed in list(self._feeds.items()):
                if sweep or feed.pending:
                    try:
                        await self.advance(tenant)
                    except Exception as exc:  # the store went away: the next round retries
                        log.warning("read_stream_feed_failed", error=type(exc).__name__)

    async def advance(self, tenant: str) -> int:
        """Fan out every final event of `tenant` after its feed's cursor; how many."""
        async with self._lock:
            feed = self._feeds.get(tenant)
            if feed is None:
                return 0
            sent = 0
            while True:
                async with reads.reading(self._backend.pool, tenant) as conn:
                    rows = await stream.events_between(conn, tenant, feed.cursor, stream.END,
                                                       FEED_PAGE)  # fmt: skip
                for row in rows:
                    event = StreamEvent.from_row(tenant, row)
                    for subscriber in list(feed.subscribers):
                        subscriber.offer(event)
                    feed.cursor = row.position
                    feed.sent(event.event_id)
                sent += len(rows)
                if len(rows) < FEED_PAGE:
                    break
            self.delivered += sent
            return sent

    def _commit_seen(self, *_: object) -> None:
        self._committed = True
        self._wake.set()

    async def _listen(self) -> None:
        """Wake every feed when a write batch commits (the worker's outbox notification)."""
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: the sweep covers until back
                log.warning("read_stream_listen_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _listen_once(self) -> None:
        url = self._backend.settings.database_url.get_secret_value()
        conn = await asyncpg.connect(url, timeout=10)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, self._commit_seen)
            self._commit_seen()  # what committed while not listening
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 10.0)
                await conn.execute("SELECT 1")  # a dead connection raises here
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    # -------------------------------------------------------------- the consumer
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
                    self._announce(records)
        finally:
            self.ready.clear()
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

    def _announce(self, records: Sequence[Any]) -> None:
        """Mark the feeds whose tenants these records are of; the pump reads them."""
        for record in records:
            try:
                body = json.loads(record.value)
            except (TypeError, ValueError):
                continue
            if not isinstance(body, dict):
                continue
            feed = self._feeds.get(_tenant_of(record.headers, body))
            if feed is not None:
                feed.announce(str(body.get("id", "")))
                self._wake.set()
