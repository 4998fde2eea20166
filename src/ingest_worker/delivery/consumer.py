"""The consume loop: one FastStream batch subscriber over every signal topic, manual commits.

All signal topics share one subscriber (one group member, one join, mixed batches). A batch's
offsets are committed only after its transaction committed and its dead letters were
acknowledged (`writers.WriterChain`). A batch that could not finish is rewound (each partition
sought back to its first record), so nothing after it can be committed past it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage

from ingest_worker.delivery.writers import ConsumedBatch, WriterChain

log = structlog.get_logger("ingest_worker.worker")


class ConsumerSettings(Protocol):
    """What the consume loop needs of the service's settings."""

    @property
    def group_id(self) -> str: ...
    @property
    def batch_max_records(self) -> int: ...
    @property
    def batch_timeout_ms(self) -> int: ...
    @property
    def fetch_max_wait_ms(self) -> int: ...
    @property
    def auto_offset_reset(self) -> Literal["earliest", "latest"]: ...
    @property
    def max_poll_interval_ms(self) -> int: ...
    @property
    def session_timeout_ms(self) -> int: ...
    @property
    def max_message_bytes(self) -> int: ...


class AssignmentTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Remembers whether the group gave this consumer its (possibly empty) assignment."""

    def __init__(self, topic: str, before_revoke: Callable[[], Awaitable[None]]) -> None:
        self.topic = topic
        self.joined = False
        self.partitions: set[TopicPartition] = set()
        self._before_revoke = before_revoke

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Let the batch being written commit its offsets while this member still owns them.
        await self._before_revoke()
        self.partitions -= set(revoked)
        log.info(
            "partitions_revoked", topic=self.topic, partitions=sorted(p.partition for p in revoked)
        )

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.joined = True
        self.partitions = set(assigned)
        log.info(
            "partitions_assigned",
            topic=self.topic,
            partitions=sorted(p.partition for p in assigned),
        )


async def _pass_through_parser(records: tuple[Any, ...]) -> KafkaMessage:
    """FastStream message for a batch without touching the records.

    FastStream's own batch parser decodes every header value as UTF-8: one record with binary
    headers would fail the whole batch before the handler runs. The handler reads the raw
    records itself, so nothing needs parsing here.
    """
    first = records[0] if records else None
    ident = f"{first.topic}:{first.partition}:{first.offset}" if first is not None else "empty"
    return KafkaMessage(
        raw_message=records,
        body=b"",
        consumer=FAKE_CONSUMER,
        message_id=ident,
        correlation_id=ident,
    )


async def _records_as_body(message: KafkaMessage) -> tuple[Any, ...]:
    """The batch's raw records are the handler's argument: the handler decodes each record itself.

    FastStream's decoder would decode headers. Taking the message through `Context("message")`
    instead resolves that field in a worker thread (fast-depends runs a synchronous field
    resolver through anyio's thread pool): a thread hop for every batch. And the message itself
    must not be the body: FastStream caches the decoded body on the message, a reference cycle
    that keeps every batch's records alive until the cyclic collector runs.
    """
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


class BatchConsumer:
    """Subscribes the signal topics and hands every consumed batch to the writer chain."""

    def __init__(self, settings: ConsumerSettings, chain: WriterChain | None) -> None:
        """`chain` None: subscribe only to describe the subscriber (the AsyncAPI document)."""
        self._settings = settings
        self._chain = chain
        self.trackers: list[AssignmentTracker] = []
        self._subscriber: Any = None

    def subscribe(
        self, broker: KafkaBroker, topics: list[str], *, pattern: str | None = None
    ) -> None:
        """One batch subscriber for every signal topic: one group member, one join, mixed batches.

        `pattern` (instead of `topics`): every topic matching it, as topics appear."""
        s = self._settings
        tracker = AssignmentTracker(
            pattern or ",".join(topics),
            lambda: self.chain.wait(timeout=s.max_poll_interval_ms / 2000),
        )
        self.trackers.append(tracker)
        subscriber = broker.subscriber(
            *topics,
            pattern=pattern,
            group_id=s.group_id,
            batch=True,
            max_records=s.batch_max_records,
            batch_timeout_ms=s.batch_timeout_ms,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=s.auto_offset_reset,
            max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(250, s.session_timeout_ms // 4),
            max_partition_fetch_bytes=max(s.max_message_bytes + 1024, 1_048_576),
            fetch_max_bytes=max(s.max_message_bytes * 4, 52_428_800),
            listener=tracker,
            parser=_pass_through_parser,
            decoder=_records_as_body,
            title="signals:consume",
            description="Failure signals, mapped to incidents; each record is "
            "validated on its own and bad ones go to the dead-letter topic.",
        )

        async def handle(records: Any) -> None:
            await self.handle_batch(records)

        subscriber(handle)
        self._subscriber = subscriber

    @property
    def chain(self) -> WriterChain:
        assert self._chain is not None, "a consumer built without a writer chain cannot consume"
        return self._chain

    def joined(self) -> bool:
        return all(t.joined for t in self.trackers)

    async def handle_batch(self, consumer_records: tuple[Any, ...]) -> None:
        consumer = getattr(self._subscriber, "consumer", None)
        if not consumer_records or not isinstance(consumer, AIOKafkaConsumer):
            return
        await self.chain.submit(consumer, ConsumedBatch.of(consumer_records))
