"""Kafka clients built from the settings: connection options, topic creation, the producer."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ingest_worker.delivery.kafka import BROKER_CALL_TIMEOUT
from ingest_worker.service.config import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by the consumer, producer and admin client (SASL/SSL included)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


#: Room for headers and framing on top of the largest record value the worker accepts.
REQUEST_HEADROOM_BYTES = 64 * 1024


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        max_request_size=max(1_048_576, settings.max_message_bytes + REQUEST_HEADROOM_BYTES),
        **client_options(settings),
        client_id=f"{settings.client_id}-producer",
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=int(BROKER_CALL_TIMEOUT * 1000),
    )


async def ensure_topics(settings: Settings, *, partitions: int = 3) -> None:
    """Create the signal, dead-letter and event topics when they do not exist yet."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id=f"{settings.client_id}-admin")
    await admin.start()
    try:
        names = [
            *settings.source_topics(),
            settings.topic_dead_letter,
            settings.topic_incident_events,
            settings.topic_commands,
            settings.topic_command_results,
        ]
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica was first
                await admin.create_topics(missing)
    finally:
        await admin.close()
