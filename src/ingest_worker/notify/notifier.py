"""The notifier: a consumer group on the incident events topic feeding every subscription.

Each record is decoded once, matched against every subscription's filter and offered to the
matching subscriptions' dispatchers (which never block the loop). Offsets are committed, every
`commit_interval` seconds and at shutdown, only up to what every subscription has delivered or
parked (`offsets.OffsetBook`): a crash, a SIGKILL included, redelivers what was not finished,
and the receivers tell the repeats by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from ingest_worker.notify.dispatch import Item, RetryPolicy, SubscriptionDispatcher
from ingest_worker.notify.formats import UndecodableEvent, decode_event
from ingest_worker.notify.metrics import NotifyMetrics
from ingest_worker.notify.offsets import OffsetBook
from ingest_worker.notify.sender import Sender, SenderConfig
from ingest_worker.notify.subscriptions import Subscription, matches

log = structlog.get_logger("ingest_worker.notify")

HEADER_SUBSCRIPTION = "x-notify-subscription"
HEADER_REASON = "x-notify-reason"
HEADER_ATTEMPTS = "x-notify-attempts"
PARK_RETRY_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class NotifierConfig:
    topic: str
    dlq_topic: str
    group_id: str
    kafka_options: dict[str, Any]
    retry: RetryPolicy
    sender: SenderConfig
    client_id: str = "ingest-notify"
    commit_interval: float = 1.0
    max_poll_records: int = 500
    session_timeout_ms: int = 10_000
    #: How long the broker may hold a fetch while it has less than one record to return.
    fetch_max_wait_ms: int = 20
    auto_offset_reset: str = "earliest"


async def ensure_topics(options: dict[str, Any], names: Sequence[str], client_id: str) -> None:
    """Create the topics that do not exist yet (three partitions each)."""
    admin = AIOKafkaAdminClient(**options, client_id=f"{client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, 3, 1) for name in names if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def parked_headers(
    headers: Sequence[tuple[str, bytes]], subscription: str, reason: str, attempts: int
) -> list[tuple[str, bytes]]:
    """The record's headers (earlier `x-notify-*` ones dropped) and the parking headers."""
    kept = [(k, v) for k, v in headers if not k.lower().startswith("x-notify-")]
    return [
        *kept,
        (HEADER_SUBSCRIPTION, subscription.encode()),
        (HEADER_REASON, reason.encode()),
        (HEADER_ATTEMPTS, str(attempts).encode()),
    ]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._notifier.commit()
        for tp in revoked:
            self._notifier.book.revoke(tp.topic, tp.partition)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._notifier.joined = True
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class Notifier:
    """Consumes the events topic and delivers to the subscriptions until `stop` is set."""

    def __init__(
        self,
        subscriptions: Sequence[Subscription],
        config: NotifierConfig,
        metrics: NotifyMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or NotifyMetrics()
        self.book = OffsetBook()
        self.joined = False
        self.alive = False
        self._sender = Sender(config.sender)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False
        self.dispatchers = [
            SubscriptionDispatcher(
                sub,
                send=self._sender.send,
                park=self._park,
                policy=config.retry,
                metrics=self.metrics,
            )
            for sub in subscriptions
        ]

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        await ensure_topics(c.kafka_options, [c.topic, c.dlq_topic], c.client_id)
        self._producer = AIOKafkaProducer(
            **c.kafka_options, client_id=f"{c.client_id}-parking", acks="all"
        )
        self._consumer = AIOKafkaConsumer(
            **c.kafka_options,
            client_id=c.client_id,
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset=c.auto_offset_reset,
            session_timeout_ms=c.session_timeout_ms,
            fetch_max_wait_ms=c.fetch_max_wait_ms,
            metadata_max_age_ms=5000,
        )
        await self._producer.start()
        try:
            self._consumer.subscribe([c.topic], listener=_Rebalance(self))
            await self._consumer.start()
            for dispatcher in self.dispatchers:
                dispatcher.start()
            self.alive = True
            log.info(
                "notifier_started",
                topic=c.topic,
                group=c.group_id,
                subscriptions=[
                    {"id": d.subscription.id, "url": d.subscription.safe_url()}
                    for d in self.dispatchers
                ],
            )
            await self._loop(stop)
        finally:
            self.alive = False
            self._stopping = True
            for dispatcher in self.dispatchers:
                await dispatcher.stop()
            with contextlib.suppress(Exception):
                await self.commit()
            await self._consumer.stop()
            await self._producer.stop()
            await self._sender.close()
            log.info("notifier_stopped")

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        limit = self.config.retry.queue_size * max(1, len(self.dispatchers))
        last_commit = time.monotonic()
        while not stop.is_set():
            held = consumer.assignment()
            if self.book.pending() >= limit:
                consumer.pause(*held)  # the subscriptions pause themselves first; a safety net
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=200, max_records=self.config.max_poll_records)
            for tp, records in batch.items():
                for record in records:
                    self._offer(tp, record)
            if time.monotonic() - last_commit >= self.config.commit_interval:
                await self.commit()
                last_commit = time.monotonic()

    def _offer(self, tp: TopicPartition, record: Any) -> None:
        try:
            event = decode_event(
                record.key, record.value, list(record.headers or ()), int(record.timestamp)
            )
        except UndecodableEvent as exc:
            log.warning(
                "event_skipped", partition=tp.partition, offset=record.offset, reason=str(exc)
            )
            self.book.read(tp.topic, tp.partition, record.offset, 0)
            return
        facts = event.facts()
        targets = [d for d in self.dispatchers if matches(d.subscription, facts)]
        generation = self.book.read(tp.topic, tp.partition, record.offset, len(targets))
        for dispatcher in targets:
            dispatcher.offer(
                Item(
                    event,
                    settle=functools.partial(
                        self.book.done, tp.topic, tp.partition, record.offset, generation
                    ),
                    owned=functools.partial(self.book.owned, tp.topic, tp.partition, generation),
                )
            )

    async def commit(self) -> None:
        """Commit every partition's offset that every subscription is done with."""
        if self._consumer is None:
            return
        moves = self.book.to_commit()
        if not moves:
            return
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in moves.items()}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit_failed", error=type(exc).__name__)
            return
        self.book.committed(moves)

    async def _park(self, subscription: Subscription, item: Item, reason: str) -> None:
        """Publish the event on the notifications dead-letter topic, retrying until it is
        acknowledged (a parked event is never dropped)."""
        assert self._producer is not None
        event = item.event
        headers = parked_headers(event.headers, subscription.id, reason, item.attempts)
        delay = 0.1
        while True:
            try:
                await self._producer.send_and_wait(
                    self.config.dlq_topic, event.value, key=event.key, headers=headers
                )
                return
            except KafkaError as exc:
                log.warning("park_failed", subscription=subscription.id, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(PARK_RETRY_MAX_SECONDS, delay * 2)
