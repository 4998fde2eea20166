"""`ingest-worker notify replay`: send the parked events of the subscriptions again.

Each subscription has its own replay position on the notifications dead-letter topic (offsets
committed under the group `<notify group>.replay.<subscription id>`), so a replay of one
subscription neither skips nor repeats another's events. A replay reads up to the topic's end
as it was when the replay started, sends each of the subscription's parked events in order,
retrying a failure for up to `max_seconds`, and stops at the first event it could not deliver
(its position stays before it: the next replay starts there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from ingest_worker.notify.dispatch import RetryPolicy
from ingest_worker.notify.formats import IncidentEvent, UndecodableEvent, decode_event
from ingest_worker.notify.notifier import HEADER_SUBSCRIPTION, NotifierConfig, ensure_topics
from ingest_worker.notify.sender import Outcome, Sender
from ingest_worker.notify.subscriptions import Subscription

log = structlog.get_logger("ingest_worker.notify")


@dataclass
class ReplayResult:
    subscription: str
    sent: int = 0
    failed: Outcome | None = None
    skipped: list[str] = field(default_factory=list)


def replay_group(config: NotifierConfig, subscription: str) -> str:
    return f"{config.group_id}.replay.{subscription}"


async def replay(
    subscriptions: Sequence[Subscription], config: NotifierConfig, *, max_seconds: float
) -> list[ReplayResult]:
    """Replay every given subscription's parked events; one result per subscription."""
    await ensure_topics(config.kafka_options, [config.dlq_topic], config.client_id)
    sender = Sender(config.sender)
    try:
        return [await _replay_one(sub, config, sender, max_seconds) for sub in subscriptions]
    finally:
        await sender.close()


async def _replay_one(
    subscription: Subscription, config: NotifierConfig, sender: Sender, max_seconds: float
) -> ReplayResult:
    result = ReplayResult(subscription.id)
    consumer = AIOKafkaConsumer(
        **config.kafka_options,
        client_id=f"{config.client_id}-replay",
        group_id=replay_group(config, subscription.id),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(config.dlq_topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(config.dlq_topic) or set()
        assigned = [TopicPartition(config.dlq_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            if not await _replay_partition(consumer, tp, ends[tp], subscription, config, sender,
                                           max_seconds, result):  # fmt: skip
                break
    finally:
        await consumer.stop()
    return result


async def _replay_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    end: int,
    subscription: Subscription,
    config: NotifierConfig,
    sender: Sender,
    max_seconds: float,
    result: ReplayResult,
) -> bool:
    """Send the partition's parked events of `subscription` up to `end`; False on a failure."""
    while (position := await consumer.position(tp)) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=100)
        for record in batch.get(tp, []):
            if record.offset >= end:
                break
            headers = dict(record.headers or ())
            if headers.get(HEADER_SUBSCRIPTION, b"").decode() == subscription.id:
                try:
                    event = decode_event(
                        record.key, record.value, list(record.headers), int(record.timestamp)
                    )
                except UndecodableEvent as exc:
                    result.skipped.append(f"offset {record.offset}: {exc}")
                else:
                    outcome = await _send_with_retries(
                        sender, subscription, event, config.retry, max_seconds
                    )
                    if not outcome.delivered:
                        result.failed = outcome
                        await _commit(consumer, tp, record.offset)
                        return False
                    result.sent += 1
            await _commit(consumer, tp, record.offset + 1)
        if not batch and await consumer.position(tp) == position:
            await asyncio.sleep(0)
    return True


async def _commit(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    await consumer.commit({tp: OffsetAndMetadata(offset, "")})


async def _send_with_retries(
    sender: Sender,
    subscription: Subscription,
    event: IncidentEvent,
    policy: RetryPolicy,
    max_seconds: float,
) -> Outcome:
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        outcome = await sender.send(subscription, event)
        left = max_seconds - (time.monotonic() - started)
        if outcome.delivered or left <= 0:
            return outcome
        wait = outcome.retry_after if outcome.retry_after is not None else policy.delay(attempts)
        log.info("replay_retry", subscription=subscription.id, reason=outcome.reason)
        await asyncio.sleep(min(wait, left))
