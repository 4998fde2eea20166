"""Test helpers that talk to the real broker and database: produce, read topics, run a worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from ingest_worker.service.cli_outcome import ask
from ingest_worker.service.config import Settings
from ingest_worker.service.kafka_clients import ensure_topics
from ingest_worker.service.worker import Worker

LOCK_WAITERS = """SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'"""


async def someone_waits_on_a_lock(conn: Any) -> bool:
    """Whether a backend of `conn`'s database waits on a lock (e.g. one the test holds)."""
    return bool(await conn.fetchval(LOCK_WAITERS))


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Wait until `check()` is true, failing the test after `timeout` seconds.

    Used only where no event can be awaited (e.g. database state after an asynchronous worker).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def produce(
    settings: Settings,
    topic: str,
    values: Sequence[bytes | None],
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=v,
                key=key if key is not None or v is not None else b"k",
                headers=list(headers),
            )
            for v in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@dataclass
class TopicReader:
    """Reads every record of a topic from the beginning, without a consumer group."""

    bootstrap_servers: str
    topic: str
    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        partitions = None
        deadline = time.monotonic() + 30
        while not partitions:
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions:
                await self._consumer._client.force_metadata_update()  # topic may be brand new
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {self.topic} does not exist")
                partitions = self._consumer.partitions_for_topic(self.topic)
        self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        await self._consumer.seek_to_beginning()
        return self

    async def read_until(
        self, count: int, *, timeout: float = 30.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Await records until at least `count` have been read in total."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.topic}: expected {count} records, got {len(self.records)}"
                )
            batch = await self._consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for recs in batch.values():
                self.records.extend(recs)
        return self.records

    async def drain(self, *, quiet_for: float = 1.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Read until the topic's end offsets are reached (everything written so far)."""
        assert self._consumer is not None
        end = await self._consumer.end_offsets(list(self._consumer.assignment()))
        deadline = time.monotonic() + 30
        while await self._behind(end):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: could not read up to the end offsets")
            batch = await self._consumer.getmany(timeout_ms=int(quiet_for * 1000))
            for recs in batch.values():
                self.records.extend(recs)
        return self.records

    async def _behind(self, end: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, offset in end.items():
            if int(await self._consumer.position(tp)) < offset:
                return True
        return False

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@contextlib.asynccontextmanager
async def reading(settings: Settings, topic: str) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(settings.kafka_bootstrap_servers, topic).start()
    try:
        yield reader
    finally:
        await reader.stop()


@dataclass
class RunningWorker:
    worker: Worker
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 60)


async def start_worker(settings: Settings) -> RunningWorker:
    """Start a worker in this event loop and wait until its consumers joined the group."""
    await ensure_topics(settings)
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))

    def joined() -> bool:
        if task.done():
            task.result()
        return worker.http is not None and worker.health.partitions_assigned()

    await eventually(joined, timeout=60, what="the worker to join its consumer group")
    return RunningWorker(worker, stop, task)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


async def publish_and_wait(
    settings: Settings, message: dict[str, Any], wait_seconds: float
) -> dict[str, Any] | None:
    """Publish one command as the CLI does and return its outcome, or None after `wait_seconds`."""
    return (await ask(settings, message, wait_seconds, event_seconds=0)).outcome
