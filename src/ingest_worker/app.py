"""Bootstrap: the one place that builds the pool, broker, subscribers, outbox and HTTP server.

One FastStream batch subscriber per signal topic, all in the same consumer group, with manual
acknowledgement: a batch's offsets are committed only after `BatchProcessor.process` returned,
i.e. after its transaction committed and its dead letters were acknowledged. A batch that could
not finish is rewound (`nack` seeks each partition back to its first record), so nothing after it
can be committed past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy, Context
from faststream.kafka import KafkaBroker
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage

from .config import Settings
from .database import PostgresIncidentStore, create_pool, ping
from .health import HealthApp, HealthServer, HealthState
from .kafka import KafkaDeadLetterSink, client_options, ensure_topics, make_producer
from .metrics import Metrics
from .migrations import migrate
from .outbox import OutboxPublisher
from .pipeline import Backoff, BatchProcessor, PreparedBatch, ShutdownRequested, SignalRecord
from .store import LOCK_TURN, LockTurn

log = structlog.get_logger("ingest_worker.worker")

PROBE_INTERVAL_SECONDS = 2.0


class _AssignmentTracker(ConsumerRebalanceListener):  # type: ignore[misc]
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


@dataclass(frozen=True, slots=True)
class _Batch:
    """One consumed batch: its records and, per partition, its first and next offsets."""

    records: list[SignalRecord]
    earliest: dict[TopicPartition, int]
    next_offsets: dict[TopicPartition, int]

    @classmethod
    def of(cls, consumer_records: tuple[Any, ...]) -> _Batch:
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


@dataclass(slots=True)
class _Writer:
    """A batch being written. A worker writes up to `INGEST_WRITE_CONCURRENCY` batches at once."""

    batch: _Batch
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


async def _no_decoder(message: KafkaMessage) -> None:
    """The handler decodes each record itself; FastStream's decoder would also decode headers."""
    return None


def _earliest_of(*offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    merged: dict[TopicPartition, int] = {}
    for mapping in offsets:
        for tp, offset in mapping.items():
            merged[tp] = min(merged.get(tp, offset), offset)
    return merged


def _seek(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Rewind partitions (those still assigned) so that their records are read again."""
    assigned = consumer.assignment()
    for tp, offset in offsets.items():
        if tp in assigned:
            consumer.seek(tp, offset)


def _security(settings: Settings) -> dict[str, Any]:
    """FastStream wants its own security objects; build them from the same settings."""
    options = client_options(settings)
    options.pop("bootstrap_servers")
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    use_ssl = settings.kafka_security_protocol == "SASL_SSL"
    ssl_context = options.get("ssl_context")
    security: BaseSecurity
    if settings.kafka_sasl_mechanism == "PLAIN":
        security = SASLPlaintext(
            username=settings.kafka_sasl_username or "",
            password=password,
            ssl_context=ssl_context,
            use_ssl=use_ssl,
        )
    elif settings.kafka_sasl_mechanism == "SCRAM-SHA-256":
        security = SASLScram256(
            username=settings.kafka_sasl_username or "",
            password=password,
            ssl_context=ssl_context,
            use_ssl=use_ssl,
        )
    elif settings.kafka_sasl_mechanism == "SCRAM-SHA-512":
        security = SASLScram512(
            username=settings.kafka_sasl_username or "",
            password=password,
            ssl_context=ssl_context,
            use_ssl=use_ssl,
        )
    else:
        security = BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    return {"security": security}


def build_broker(settings: Settings, graceful_timeout: float | None = None) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.client_id,
        graceful_timeout=graceful_timeout,
        # FastStream's own errors must be visible; its per-batch lines only at DEBUG.
        logger=logging.getLogger("ingest_worker.faststream"),
        log_level=logging.DEBUG,
        **_security(settings),
    )


class Worker:
    """The running service. `serve()` runs it until the stop event is set, then shuts down."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stopping = asyncio.Event()
        self.health = HealthState(max_batch_seconds=settings.max_poll_interval_ms / 1000)
        self.pool: asyncpg.Pool | None = None
        self.broker: KafkaBroker | None = None
        self.outbox: OutboxPublisher | None = None
        self.http: HealthServer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._trackers: list[_AssignmentTracker] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._processor: BatchProcessor | None = None
        self._writers: list[_Writer] = []  # in consumption order
        self._subscriber: Any = None
        self.batches = 0

    # ----------------------------------------------------------------- start
    async def start(self) -> None:
        s = self.settings
        log.info("starting", settings=s.masked())
        self.pool = await self._retry_start("database", lambda: create_pool(s))
        if s.migrate_on_start:
            async with self.pool.acquire() as conn:
                applied = await migrate(conn)
            log.info("migrated", applied=[m.version for m in applied])
        await self._retry_start("broker", lambda: ensure_topics(s))
        producer = self._producer = make_producer(s)
        await self._retry_start("producer", producer.start)
        self.health.database_ok = self.health.broker_ok = True

        self._processor = BatchProcessor(
            topic_kinds=s.topic_kinds(),
            store=PostgresIncidentStore(self.pool, outbox_lanes=s.outbox_lanes),
            dead_letters=KafkaDeadLetterSink(producer, s.topic_dead_letter),
            metrics=self.metrics,
            max_message_bytes=s.max_message_bytes,
            retry_initial_seconds=s.retry_initial_seconds,
            retry_max_seconds=s.retry_max_seconds,
            stopping=self.stopping,
            on_fault=lambda active: self.health.set_fault("pipeline", active),
        )
        self.broker = build_broker(s, graceful_timeout=s.shutdown_grace_seconds * 0.6)
        self.subscribe()
        await self.broker.start()
        self.health.consumer_alive = self._consumers_alive
        self.health.partitions_assigned = lambda: all(t.joined for t in self._trackers)

        self.outbox = OutboxPublisher(
            pool=self.pool,
            producer=producer,
            topic=s.topic_incident_events,
            ce_source=s.ce_source,
            metrics=self.metrics,
            batch_size=s.outbox_batch_size,
            poll_seconds=s.outbox_poll_seconds,
            retry_initial_seconds=s.retry_initial_seconds,
            retry_max_seconds=s.retry_max_seconds,
        )
        self._tasks.append(asyncio.create_task(self.outbox.run(self.stopping), name="outbox"))
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="probes"))
        http = HealthServer(HealthApp(self.health, self.metrics), s.http_host, s.http_port)
        await http.start()
        self.http = http
        log.info("started", http_port=http.port, topics=list(s.topic_kinds()))

    async def _retry_start(self, what: str, factory: Any) -> Any:
        backoff = Backoff(self.settings.retry_initial_seconds, self.settings.retry_max_seconds)
        while True:
            try:
                return await factory()
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                TimeoutError,
                ConnectionError,
            ) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "dependency_unavailable",
                    component=what,
                    error=repr(exc),
                    retry_in=round(delay, 3),
                )
            except Exception as exc:  # aiokafka raises KafkaConnectionError and friends
                if type(exc).__module__.startswith("aiokafka"):
                    delay = backoff.next_delay()
                    log.warning(
                        "dependency_unavailable",
                        component=what,
                        error=repr(exc),
                        retry_in=round(delay, 3),
                    )
                else:
                    raise
            if self.stopping.is_set():
                raise ShutdownRequested(f"stopping while waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    def subscribe(self) -> None:
        """One batch subscriber for every signal topic: one group member, one join, mixed batches."""
        assert self.broker is not None
        s = self.settings
        topics = list(s.topic_kinds())
        tracker = _AssignmentTracker(
            ",".join(topics),
            lambda: self._wait_for_writers(timeout=s.max_poll_interval_ms / 2000),
        )
        self._trackers.append(tracker)
        subscriber = self.broker.subscriber(
            *topics,
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
            decoder=_no_decoder,
            title="signals:consume",
            description="Failure signals, mapped to incidents per seed 000; each record is "
            "validated on its own and bad ones go to the dead-letter topic.",
        )

        async def handle(message: KafkaMessage = Context("message")) -> None:
            await self._handle_batch(message)

        subscriber(handle)
        self._subscriber = subscriber

    def _consumers_alive(self) -> bool:
        if self.broker is None:
            return False
        for sub in self.broker.subscribers:
            tasks = getattr(sub, "tasks", [])
            if not tasks or any(t.done() for t in tasks):
                return False
        return True

    # ----------------------------------------------------------------- consume
    async def _handle_batch(self, message: KafkaMessage) -> None:
        """Decode this batch while earlier ones are written, then hand it to a writer.

        Up to `INGEST_WRITE_CONCURRENCY` batches are written at once, each in its own
        transaction. Their lock statements run in consumption order (`store.LockTurn`), and each
        batch commits exactly its own offsets after its transaction and dead letters are done and
        after the batch before it committed, so offsets are committed in consumption order. If a
        batch cannot finish, the batches after it do not commit either, and every partition is
        rewound to its earliest unwritten offset, so that no later commit can skip it.
        """
        assert self._processor is not None
        raw = message.raw_message
        consumer_records = raw if isinstance(raw, tuple) else (raw,)
        consumer = getattr(self._subscriber, "consumer", None)
        if not consumer_records or not isinstance(consumer, AIOKafkaConsumer):
            return
        batch = _Batch.of(consumer_records)
        if self.stopping.is_set():
            await self._wait_for_writers()
            _seek(consumer, batch.earliest)
            return
        started = time.monotonic()
        prepared = self._processor.prepare(batch.records)
        limit = self.settings.write_concurrency
        while self._writers and (len(self._writers) >= limit or self._writers[0].task_done()):
            if not await self._writers[0].done():
                # Abandoned and rewound, and so are the batches after it: read them all again,
                # and this one after them.
                await self._rewind_all(consumer, batch)
                return
            self._writers.pop(0)
        if self._writers and self._writers[-1].task_done() and not await self._writers[-1].done():
            await self._rewind_all(consumer, batch)
            return
        if self.stopping.is_set():
            # Shutdown began while earlier batches were written: start nothing new.
            _seek(consumer, batch.earliest)
            return
        previous = self._writers[-1] if self._writers else None
        locked = asyncio.Event()
        task = asyncio.create_task(
            self._write(consumer, batch, locked, previous, prepared, started)
        )
        writer = _Writer(batch, started, locked, task)
        self._writers.append(writer)
        writer.task.add_done_callback(lambda _: self._refresh_batch_clock())
        self._refresh_batch_clock()

    def _refresh_batch_clock(self) -> None:
        """/healthz watches the oldest batch still being written."""
        running = [w.started for w in self._writers if not w.task_done()]
        self.health.batch_started_at = min(running) if running else None

    async def _rewind_all(self, consumer: AIOKafkaConsumer, batch: _Batch) -> None:
        """After an abandoned batch: wait for every batch in flight, then rewind every partition
        to the earliest offset among them and `batch`."""
        writers, self._writers = self._writers, []
        for writer in writers:
            await writer.done()
        _seek(consumer, _earliest_of(*(w.batch.earliest for w in writers), batch.earliest))

    async def _write(
        self,
        consumer: AIOKafkaConsumer,
        batch: _Batch,
        locked: asyncio.Event,
        previous: _Writer | None,
        prepared: PreparedBatch,
        started: float,
    ) -> bool:
        """Apply a prepared batch and commit its offsets; False if it was abandoned (rewound)."""
        assert self._processor is not None
        LOCK_TURN.set(LockTurn(previous.locked if previous is not None else None, locked))
        try:
            with structlog.contextvars.bound_contextvars(batch=len(batch.records)):
                report = await self._processor.complete(prepared)
        except ShutdownRequested:
            _seek(consumer, batch.earliest)
            log.info("batch_abandoned_on_shutdown", records=len(batch.records))
            return False
        except Exception as exc:
            # A bug, not bad input (dead-lettered) nor a transient fault (retried): rewind so
            # that nothing after this batch is committed, and slow down before the retry.
            log.exception("batch_failed", error=repr(exc), records=len(batch.records))
            self.metrics.errors.labels(component="batch", kind=type(exc).__name__).inc()
            _seek(consumer, batch.earliest)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.settings.retry_max_seconds)
            return False
        finally:
            locked.set()  # never keep the next batch waiting on a batch that ended
        if previous is not None and not await previous.done():
            # The batch before was abandoned: its offsets were not committed, so neither are
            # these (this batch's effects are in, and its redelivery will find them).
            _seek(consumer, batch.earliest)
            return False
        try:
            await consumer.commit(batch.next_offsets)
        except Exception as exc:  # e.g. CommitFailedError after a rebalance: redelivery is harmless
            log.warning("offset_commit_failed", error=repr(exc))
            self.metrics.errors.labels(component="commit", kind=type(exc).__name__).inc()
        elapsed = time.monotonic() - started
        self.batches += 1
        self.metrics.batch_seconds.observe(elapsed)
        self.metrics.batch_records.observe(len(batch.records))
        self._update_lag(consumer)
        if self.outbox is not None and report.events_written:
            self.outbox.wake()
        log.info(
            "batch_processed",
            records=len(batch.records),
            partitions=len(batch.next_offsets),
            duration_ms=round(elapsed * 1000, 1),
            events=report.events_written,
            **report.totals(),
        )
        return True

    async def _wait_for_writers(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
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
                    self.metrics.consumer_lag.labels(
                        topic=tp.topic, partition=str(tp.partition)
                    ).set(max(0, highwater - position))

    async def _probe_loop(self) -> None:
        assert self.pool is not None
        while not self.stopping.is_set():
            self.health.database_ok = await ping(self.pool)
            try:
                assert self._producer is not None
                await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2)
                self.health.broker_ok = True
            except Exception:
                self.health.broker_ok = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), PROBE_INTERVAL_SECONDS)

    # ----------------------------------------------------------------- stop
    async def serve(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop fetching, let the running batch finish or abandon it, flush committed events."""
        grace = self.settings.shutdown_grace_seconds
        deadline = time.monotonic() + grace * 0.9
        log.info("stopping", grace_seconds=grace)
        self.stopping.set()
        # Batches being written finish (and commit) or are abandoned, before the consumer stops.
        await self._wait_for_writers(timeout=max(0.1, grace * 0.5))
        if self.broker is not None:
            try:
                await asyncio.wait_for(self.broker.stop(), max(0.1, grace * 0.6))
            except Exception as exc:
                log.warning("broker_stop_incomplete", error=repr(exc))
        # A batch handed over just before the stop finishes (or is abandoned) first.
        await self._wait_for_writers(timeout=max(0.1, deadline - time.monotonic()))
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2)
        flushed = 0
        if self.outbox is not None and self.pool is not None:
            flush_deadline = asyncio.Event()
            remaining = max(0.1, deadline - time.monotonic())
            timer = asyncio.get_running_loop().call_later(remaining, flush_deadline.set)
            try:
                flushed = await self.outbox.drain(flush_deadline)
            except Exception as exc:
                log.warning("outbox_flush_incomplete", error=repr(exc))
            finally:
                timer.cancel()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 3)
        if self.http is not None:
            await self.http.stop()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 3)
        log.info("stopped", events_flushed=flushed, batches=self.batches)
