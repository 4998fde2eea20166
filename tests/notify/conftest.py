"""Fixtures of the notification tests: settings on the test broker, receivers, a running notifier."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ingest_worker.notify.metrics import NotifyMetrics
from ingest_worker.notify.notifier import Notifier, ensure_topics
from ingest_worker.notify.subscriptions import Subscription, parse_subscriptions
from ingest_worker.service.cli_notify import notifier_config
from ingest_worker.service.config import Settings
from tests.conftest import ServiceEndpoints
from tests.notify.receivers import Receiver, Script


@pytest.fixture
def notify_settings(services: ServiceEndpoints) -> Callable[..., Settings]:
    suffix = uuid.uuid4().hex[:10]

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": services.bootstrap_servers,
            "topic_incident_events": f"incident.events.{suffix}",
            "topic_notifications_dlq": f"incident.notifications.dlq.{suffix}",
            "notify_group_id": f"notify-{suffix}",
            "notify_retry_initial_seconds": 0.05,
            "notify_retry_max_seconds": 0.4,
            "notify_connect_timeout_seconds": 1.0,
            "notify_read_timeout_seconds": 1.0,
            "notify_allowed_networks": ["127.0.0.0/8"],
            "session_timeout_ms": 3000,
            "log_format": "console",
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[Script], Any]]:
    started: list[Receiver] = []

    async def start(script: Script) -> Receiver:
        receiver = await Receiver(script).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


def subscriptions(*entries: dict[str, Any]) -> tuple[Subscription, ...]:
    return parse_subscriptions({"subscriptions": list(entries)})


@contextlib.asynccontextmanager
async def running(settings: Settings, subs: Sequence[Subscription]) -> AsyncIterator[Notifier]:
    """A notifier consuming in this event loop, stopped at the end of the block."""
    notifier = Notifier(subs, notifier_config(settings, dev=False), NotifyMetrics())
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def publish(
    settings: Settings, records: Sequence[tuple[bytes, bytes, list[tuple[str, bytes]], int]]
) -> None:
    """Produce event records (key, value, headers, _) on the events topic, in order."""
    options = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    topics = [settings.topic_incident_events, settings.topic_notifications_dlq]
    await ensure_topics(options, topics, "notify-test")
    producer = AIOKafkaProducer(**options)
    await producer.start()
    try:
        for key, value, headers, _ in records:
            await producer.send_and_wait(
                settings.topic_incident_events, value, key=key, headers=headers
            )
    finally:
        await producer.stop()
