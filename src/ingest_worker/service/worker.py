"""The service lifecycle: builds the pool, broker, consume loop, outbox and HTTP server, and stops them.

The one wiring place. The consume loop (`delivery.consumer`), the batch writer chain
(`delivery.writers`) and the batch pipeline (`delivery.batches`) do the work; this module starts
them in order, retries dependencies that are not up yet, runs the probes, and shuts down within
the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from ingest_worker.core.errors import ShutdownRequested
from ingest_worker.core.incident import ACTIVE
from ingest_worker.delivery.batches import BatchProcessor
from ingest_worker.delivery.consumer import BatchConsumer
from ingest_worker.delivery.kafka import KafkaDeadLetterSink
from ingest_worker.delivery.outbox import OutboxPublisher
from ingest_worker.delivery.retry import Backoff
from ingest_worker.delivery.tenancy import topic_pattern
from ingest_worker.delivery.writers import WriterChain
from ingest_worker.metrics import Metrics, TenantLabels
from ingest_worker.service import telemetry
from ingest_worker.service.config import Settings
from ingest_worker.service.http import HealthApp, HealthServer, HealthState
from ingest_worker.service.kafka_clients import client_options, ensure_topics, make_producer
from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.contract import Source
from ingest_worker.store.migrations import migrate
from ingest_worker.store.outbox import OutboxStore
from ingest_worker.store.overview import incident_counts
from ingest_worker.store.postgres import PostgresIncidentStore, create_pool, ping

log = structlog.get_logger("ingest_worker.worker")

PROBE_INTERVAL_SECONDS = 2.0
#: Incidents by status and severity: the active ones (the partial index of active incidents, a
#: small part of the table) every probe interval, every status only every
#: `ALL_COUNTS_INTERVAL_SECONDS` (a scan of the whole table, which only grows).
ACTIVE_STATUSES = sorted(str(status) for status in ACTIVE)
ALL_COUNTS_INTERVAL_SECONDS = 60.0


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
    mechanisms: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    security: BaseSecurity
    sasl = mechanisms.get(settings.kafka_sasl_mechanism or "")
    if sasl is not None:
        security = sasl(
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
        self._all_counts_at = -ALL_COUNTS_INTERVAL_SECONDS  # the first refresh counts everything
        self._counts: dict[tuple[str, str], int] = {}
        self.stopping = asyncio.Event()
        self.health = HealthState(max_batch_seconds=settings.max_poll_interval_ms / 1000)
        self.pool: asyncpg.Pool | None = None
        self.broker: KafkaBroker | None = None
        self.outbox: OutboxPublisher | None = None
        self.http: HealthServer | None = None
        self.consumer: BatchConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def batches(self) -> int:
        """Batches committed since the start."""
        return self.consumer.chain.batches if self.consumer is not None else 0

    # ----------------------------------------------------------------- start
    async def start(self) -> None:
        s = self.settings
        log.info("starting", settings=s.masked())
        telemetry.configure("ingest-worker")
        self.pool = await self._retry_start("database", lambda: create_pool(s))
        if s.migrate_on_start:
            async with self.pool.acquire() as conn:
                applied = await migrate(conn)
            log.info("migrated", applied=[m.version for m in applied])
        await self._retry_start("broker", lambda: ensure_topics(s))
        producer = self._producer = make_producer(s)
        await self._retry_start("producer", producer.start)
        self.health.database_ok = self.health.broker_ok = True

        processor = BatchProcessor(
            topic_sources=self.consumed_topics(),
            store=PostgresIncidentStore(
                self.pool,
                outbox_lanes=s.outbox_lanes,
                reopen_window_seconds=s.reopen_window_seconds,
                policy=s.policy(),
                open_after=s.open_after,
            ),
            dead_letters=KafkaDeadLetterSink(producer, s.topic_dead_letter),
            metrics=self.metrics,
            max_message_bytes=s.max_message_bytes,
            retry_initial_seconds=s.retry_initial_seconds,
            retry_max_seconds=s.retry_max_seconds,
            stopping=self.stopping,
            on_fault=lambda active: self.health.set_fault("pipeline", active),
            on_events_written=self._wake_outbox,
            command_max_future_skew_seconds=s.command_max_future_skew_seconds,
            tenant_from_topic_prefix=s.tenant_from_topic_prefix,
            tenant_labels=(
                TenantLabels(self.metrics, s.metrics_max_tenants)
                if s.metrics_tenant_label
                else None
            ),
        )
        self.consumer = self.build_consumer(processor)
        self.broker = build_broker(s, graceful_timeout=s.shutdown_grace_seconds * 0.6)
        self.subscribe()
        await self.broker.start()
        self.health.consumer_alive = self._consumers_alive
        self.health.partitions_assigned = self.consumer.joined

        self.outbox = OutboxPublisher(
            store=OutboxStore(self.pool),
            producer=producer,
            topic=s.topic_incident_events,
            results_topic=s.topic_command_results,
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
        log.info("started", http_port=http.port, topics=list(self.consumed_topics()))

    def _wake_outbox(self) -> None:
        """Right after a transaction that wrote events commits (before its dead letters and
        offset commit): the publisher also polls, and wakes on the transaction's NOTIFY."""
        if self.outbox is not None:
            self.outbox.wake()

    def build_consumer(self, processor: BatchProcessor) -> BatchConsumer:
        s = self.settings

        def on_batch_clock(started: float | None) -> None:
            self.health.batch_started_at = started

        chain = WriterChain(
            processor=processor,
            metrics=self.metrics,
            stopping=self.stopping,
            concurrency=s.write_concurrency,
            retry_max_seconds=s.retry_max_seconds,
            on_batch_clock=on_batch_clock,
        )
        return BatchConsumer(s, chain)

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
        """Subscribe every signal topic of the source registry (see `BatchConsumer.subscribe`)."""
        assert self.broker is not None and self.consumer is not None
        topics = list(self.consumed_topics())
        if self.settings.tenant_from_topic_prefix:
            self.consumer.subscribe(self.broker, [], pattern=topic_pattern(topics))
        else:
            self.consumer.subscribe(self.broker, topics)

    def consumed_topics(self) -> dict[str, Source]:
        """Every signal topic of the registry, and the commands topic."""
        return {**self.settings.source_topics(), self.settings.topic_commands: COMMANDS}

    def _consumers_alive(self) -> bool:
        if self.broker is None:
            return False
        for sub in self.broker.subscribers:
            tasks = getattr(sub, "tasks", [])
            if not tasks or any(t.done() for t in tasks):
                return False
        return True

    async def _wait_for_writers(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self.consumer is not None:
            await self.consumer.chain.wait(timeout)

    async def _refresh_incident_gauge(self) -> None:
        """`ingest_incidents{status,severity}`: active statuses every probe interval, the
        others (resolved, closed, cancelled, archived) every `ALL_COUNTS_INTERVAL_SECONDS`."""
        assert self.pool is not None
        now = time.monotonic()
        everything = now - self._all_counts_at >= ALL_COUNTS_INTERVAL_SECONDS
        with contextlib.suppress(Exception):
            async with self.pool.acquire(timeout=1) as conn:
                if everything:
                    counts = await incident_counts(conn, timeout=10)
                else:
                    counts = await incident_counts(conn, ACTIVE_STATUSES, timeout=2)
            if everything:
                self._all_counts_at = now
                self._counts = counts
            else:
                self._counts = {k: v for k, v in self._counts.items() if k[0] not in ACTIVE}
                self._counts.update(counts)
            self.metrics.incidents.clear()
            for (status, severity), count in self._counts.items():
                self.metrics.incidents.labels(status=status, severity=severity).set(count)

    async def _probe_loop(self) -> None:
        assert self.pool is not None
        while not self.stopping.is_set():
            self.health.database_ok = await ping(self.pool)
            await self._refresh_incident_gauge()
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
        telemetry.flush()
        log.info("stopped", events_flushed=flushed, batches=self.batches)
