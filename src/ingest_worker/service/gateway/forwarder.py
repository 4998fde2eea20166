"""Producing to the broker: one producer (acks=all), a deadline per record, broker readiness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest_worker import tracing
from ingest_worker.service.config import Settings
from ingest_worker.service.gateway.metrics import GatewayMetrics
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.service.kafka_clients import ensure_topics, make_producer

log = structlog.get_logger("ingest_worker.gateway")

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (or refused): answer 503, the sender retries."""


@dataclass(frozen=True, slots=True)
class Acknowledged:
    topic: str
    partition: int
    offset: int


class Forwarder:
    """Owns the producer. `produce` returns only once the broker acknowledged the record."""

    def __init__(
        self, settings: Settings, gateway: GatewaySettings, metrics: GatewayMetrics
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.broker_ok = False

    async def start(self) -> None:
        """Connect in the background: the gateway serves (not ready) while the broker is away."""
        self._tasks.append(asyncio.create_task(self._connect_then_probe()))

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not (self._producer is not None and self.broker_ok):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _connect_then_probe(self) -> None:
        while not self._stopping.is_set():
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except Exception as exc:
                log.warning("gateway_broker_connect_failed", error=type(exc).__name__)
                with contextlib.suppress(Exception):
                    await producer.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                continue
            self._producer = producer
            break
        if self._producer is None:
            return
        if self.gateway.ensure_topics:
            try:
                await asyncio.wait_for(ensure_topics(self.settings), 15)
            except Exception as exc:
                log.warning("gateway_ensure_topics_failed", error=type(exc).__name__)
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(
                    self._producer.client.fetch_all_metadata(), PROBE_TIMEOUT_SECONDS
                )
                self.broker_ok = True
            except Exception:
                self.broker_ok = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PROBE_INTERVAL_SECONDS)

    async def produce(
        self, topic: str, key: bytes | None, value: bytes, *, tenant: str
    ) -> Acknowledged:
        """Produce with the `tenant` header (the worker reads the record's tenant from it)."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        with tracing.span(
            f"send {topic}",
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": topic,
            },
        ) as span:
            # The record carries this span's context: the worker's batch span continues it.
            headers = [("tenant", tenant.encode()), *tracing.inject_headers()]
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.gateway.produce_timeout_seconds):
                    future = await producer.send(topic, value=value, key=key, headers=headers)
                    # Shielded: a timeout abandons the wait, never the producer's own future.
                    metadata: Any = await asyncio.shield(future)
            except TimeoutError:
                self.broker_ok = False
                raise BrokerUnavailable("the broker did not acknowledge in time") from None
            except KafkaError as exc:
                raise BrokerUnavailable(
                    f"the broker refused the record ({type(exc).__name__})"
                ) from exc
            self.metrics.produce_seconds.observe(time.perf_counter() - started)
            ack = Acknowledged(str(metadata.topic), int(metadata.partition), int(metadata.offset))
            if span.is_recording():
                span.set_attribute("messaging.destination.partition.id", str(ack.partition))
                span.set_attribute("messaging.kafka.offset", ack.offset)
        return ack

    async def stop(self) -> None:
        """Stop probing, then flush and close the producer (records in flight get their acks)."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)
