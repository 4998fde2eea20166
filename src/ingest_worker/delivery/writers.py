"""The batch writer chain: up to `INGEST_WRITE_CONCURRENCY` consumed batches written at once.

Each batch is written in its own transaction. Their lock statements run in consumption order
(`store.incidents.LockTurn`), and each batch commits exactly its own offsets after its
transaction and dead letters are done and after the batch before it committed, so offsets are
committed in consumption order. If a batch cannot finish, the batches after it do not commit
either, and every partition is rewound to its earliest unwritten offset, so that no later commit
can skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest_worker import tracing
from ingest_worker.core.errors import ShutdownRequested
from ingest_worker.delivery.batches import BatchProcessor, PreparedBatch, SignalRecord
from ingest_worker.metrics import Metrics
from ingest_worker.store.incidents import LockTurn

log = structlog.get_logger("ingest_worker.worker")


@dataclass(frozen=True, slots=True)
class ConsumedBatch:
    """One consumed batch: its records and, per partition, its first and next offsets."""

    records: list[SignalRecord]
    earliest: dict[TopicPartition, int]
    next_offsets: dict[TopicPartition, int]

    @classmethod
    def of(cls, consumer_records: tuple[Any, ...]) -> ConsumedBatch:
        records: list[SignalRecord] = []
        earliest: dict[TopicPartition, int] = {}
        next_offsets: dict[TopicPartition, int] = {}
        for r in consumer_records:
            records.append(
                SignalRecord(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value,
                    headers=tuple(r.headers or ()),
                    timestamp_ms=r.timestamp,
                )
            )
            tp = TopicPartition(r.topic, r.partition)
            earliest[tp] = min(earliest.get(tp, r.offset), r.offset)
            next_offsets[tp] = max(next_offsets.get(tp, 0), r.offset + 1)
        return cls(records, earliest, next_offsets)


def batch_span(batch: ConsumedBatch) -> tracing.Span:
    """The (started, not current) span of a consumed batch: linked to the trace context of each
    record that carried one; a batch of one such record continues its trace as a child."""
    if not tracing.active():
        return tracing.INVALID_SPAN
    records = batch.records
    parent = None
    single = tracing.header_context(records[0].headers) if len(records) == 1 else None
    if single is not None:
        parent, links = tracing.child_of(single), []
    else:
        links = tracing.links(tracing.header_context(r.headers) for r in records)
    topics = sorted({r.topic for r in records})
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.batch.message_count": len(records),
        "ingest.batch.records": len(records),
        "ingest.batch.topics": topics,
        "ingest.batch.partitions": len(batch.next_offsets),
    }
    if len(topics) == 1:
        attributes["messaging.destination.name"] = topics[0]
    if len(records) == 1:
        attributes["messaging.destination.partition.id"] = str(records[0].partition)
        attributes["messaging.kafka.offset"] = records[0].offset
    return tracing.tracer().start_span(
        "ingest.batch",
        context=parent,
        kind=tracing.SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    )


def earliest_of(*offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    merged: dict[TopicPartition, int] = {}
    for mapping in offsets:
        for tp, offset in mapping.items():
            merged[tp] = min(merged.get(tp, offset), offset)
    return merged


def seek(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Rewind partitions (those still assigned) so that their records are read again."""
    assigned = consumer.assignment()
    for tp, offset in offsets.items():
        if tp in assigned:
            consumer.seek(tp, offset)


@dataclass(slots=True)
class _Writer:
    """A batch being written."""

    batch: ConsumedBatch
    started: float
    locked: asyncio.Event  # set once its transaction holds its locks, or once it ended
    task: asyncio.Task[bool]

    def task_done(self) -> bool:
        return self.task.done()

    async def done(self) -> bool:
        """Wait for the write; True when it committed its offsets."""
        try:
            return await asyncio.shield(self.task)
        except Exception:
            return False


class WriterChain:
    """The batches being written, in consumption order, and the rules that chain them."""

    def __init__(
        self,
        *,
        processor: BatchProcessor,
        metrics: Metrics,
        stopping: asyncio.Event,
        concurrency: int,
        retry_max_seconds: float,
        on_batch_clock: Callable[[float | None], None],
    ) -> None:
        self._processor = processor
        self._metrics = metrics
        self._stopping = stopping
        self._concurrency = concurrency
        self._retry_max_seconds = retry_max_seconds
        self._on_batch_clock = on_batch_clock
        self._writers: list[_Writer] = []
        self.batches = 0

    async def submit(self, consumer: AIOKafkaConsumer, batch: ConsumedBatch) -> None:
        """Decode `batch` while earlier ones are written, then start writing it."""
        if self._stopping.is_set():
            await self.wait()
            seek(consumer, batch.earliest)
            return
        started = time.monotonic()
        span = batch_span(batch)
        with tracing.use(span):
            try:
                writing = await self._start(consumer, batch, started, span)
            except BaseException as exc:
                tracing.fail(span, exc)
                span.end()
                raise
        if not writing:
            span.set_attribute("ingest.batch.outcome", "rewound")
            span.end()

    async def _start(
        self, consumer: AIOKafkaConsumer, batch: ConsumedBatch, started: float, span: tracing.Span
    ) -> bool:
        """Prepare `batch` and start writing it (False: rewound instead)."""
        prepared = self._processor.prepare(batch.records)
        while self._writers and (
            len(self._writers) >= self._concurrency or self._writers[0].task_done()
        ):
            if not await self._writers[0].done():
                # Abandoned and rewound, and so are the batches after it: read them all again,
                # and this one after them.
                await self._rewind_all(consumer, batch)
                return False
            self._writers.pop(0)
        if self._writers and self._writers[-1].task_done() and not await self._writers[-1].done():
            await self._rewind_all(consumer, batch)
            return False
        if self._stopping.is_set():
            # Shutdown began while earlier batches were written: start nothing new.
            seek(consumer, batch.earliest)
            return False
        previous = self._writers[-1] if self._writers else None
        locked = asyncio.Event()
        task = asyncio.create_task(
            self._traced_write(consumer, batch, locked, previous, prepared, started, span)
        )
        writer = _Writer(batch, started, locked, task)
        self._writers.append(writer)
        writer.task.add_done_callback(lambda _: self._refresh_batch_clock())
        self._refresh_batch_clock()
        return True

    def _refresh_batch_clock(self) -> None:
        """/healthz watches the oldest batch still being written."""
        running = [w.started for w in self._writers if not w.task_done()]
        self._on_batch_clock(min(running) if running else None)

    async def _rewind_all(self, consumer: AIOKafkaConsumer, batch: ConsumedBatch) -> None:
        """After an abandoned batch: wait for every batch in flight, then rewind every partition
        to the earliest offset among them and `batch`."""
        writers, self._writers = self._writers, []
        for writer in writers:
            await writer.done()
        seek(consumer, earliest_of(*(w.batch.earliest for w in writers), batch.earliest))

    async def _traced_write(
        self,
        consumer: AIOKafkaConsumer,
        batch: ConsumedBatch,
        locked: asyncio.Event,
        previous: _Writer | None,
        prepared: PreparedBatch,
        started: float,
        span: tracing.Span,
    ) -> bool:
        """`_write`, then end the batch span with its outcome (the task runs in its context)."""
        try:
            committed = await self._write(consumer, batch, locked, previous, prepared, started)
        except BaseException as exc:
            tracing.fail(span, exc)
            span.end()
            raise
        span.set_attribute("ingest.batch.outcome", "committed" if committed else "rewound")
        span.end()
        return committed

    async def _write(
        self,
        consumer: AIOKafkaConsumer,
        batch: ConsumedBatch,
        locked: asyncio.Event,
        previous: _Writer | None,
        prepared: PreparedBatch,
        started: float,
    ) -> bool:
        """Apply a prepared batch and commit its offsets; False if it was abandoned (rewound)."""
        turn = LockTurn(previous.locked if previous is not None else None, locked)
        try:
            with structlog.contextvars.bound_contextvars(batch=len(batch.records)):
                report = await self._processor.complete(prepared, turn)
        except ShutdownRequested:
            seek(consumer, batch.earliest)
            log.info("batch_abandoned_on_shutdown", records=len(batch.records))
            return False
        except Exception as exc:
            # A bug, not bad input (dead-lettered) nor a transient fault (retried): rewind so
            # that nothing after this batch is committed, and slow down before the retry.
            log.exception("batch_failed", error=repr(exc), records=len(batch.records))
            tracing.fail(tracing.current_span(), exc)
            self._metrics.errors.labels(component="batch", kind=type(exc).__name__).inc()
            seek(consumer, batch.earliest)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry_max_seconds)
            return False
        finally:
            locked.set()  # never keep the next batch waiting on a batch that ended
        if previous is not None and not await previous.done():
            # The batch before was abandoned: its offsets were not committed, so neither are
            # these (this batch's effects are in, and its redelivery will find them).
            seek(consumer, batch.earliest)
            return False
        try:
            await consumer.commit(batch.next_offsets)
        except Exception as exc:  # e.g. CommitFailedError after a rebalance: redelivery is harmless
            log.warning("offset_commit_failed", error=repr(exc))
            self._metrics.errors.labels(component="commit", kind=type(exc).__name__).inc()
        elapsed = time.monotonic() - started
        self.batches += 1
        self._metrics.batch_seconds.observe(elapsed)
        self._metrics.batch_records.observe(len(batch.records))
        self._update_lag(consumer)
        current = tracing.current_span()
        if current.is_recording():
            current.set_attributes(
                {"ingest.batch.events": report.events_written}
                | {f"ingest.batch.{outcome}": count for outcome, count in report.totals().items()}
            )
        log.info(
            "batch_processed",
            records=len(batch.records),
            partitions=len(batch.next_offsets),
            duration_ms=round(elapsed * 1000, 1),
            events=report.events_written,
            **report.totals(),
        )
        return True

    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every batch being written is committed or abandoned."""
        tasks = [w.task for w in self._writers]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.shield(asyncio.gather(*tasks, return_exceptions=True)), timeout
                )

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            with contextlib.suppress(Exception):
                highwater = consumer.highwater(tp)
                position = consumer._subscription.subscription.assignment.state_value(tp).position
                if highwater is not None and position is not None:
                    self._metrics.consumer_lag.labels(
                        topic=tp.topic, partition=str(tp.partition)
                    ).set(max(0, highwater - position))
