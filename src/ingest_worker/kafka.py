"""Kafka adapters: client options, topic creation, the producer and the dead-letter sink.

Records are published with aiokafka's producer directly: FastStream's publish API takes headers as
text and always adds `content-type`, while the dead-letter contract keeps the original headers
byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from .config import Settings
from .errors import TransientError
from .pipeline import DeadLetter

#: Bound on every individual broker call made outside the consume loop.
BROKER_CALL_TIMEOUT = 15.0


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
            *settings.topic_kinds(),
            settings.topic_dead_letter,
            settings.topic_incident_events,
        ]
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica was first
                await admin.create_topics(missing)
    finally:
        await admin.close()


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers unchanged, then the `x-dlq-*` headers of SPEC §4."""
    record = letter.record
    return [
        *record.headers,
        ("x-dlq-reason", letter.reason.encode()),
        ("x-dlq-error", letter.message.encode("utf-8", errors="replace")),
        ("x-dlq-source-topic", record.topic.encode()),
        ("x-dlq-source-partition", str(record.partition).encode()),
        ("x-dlq-source-offset", str(record.offset).encode()),
        ("x-dlq-failed-at", letter.failed_at.isoformat().replace("+00:00", "Z").encode()),
    ]


class KafkaDeadLetterSink:
    """Publishes dead letters to the dead-letter topic and waits for every acknowledgement.

    A record too large for the producer or the dead-letter topic (e.g. a `too_large` record of
    10 MB) is dead-lettered without its value, with `x-dlq-value-omitted` and
    `x-dlq-original-size` headers: the original stays at the source topic, partition and offset
    named in the headers. Retrying could never make it fit, so it must not block the partition.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        try:
            pending = [(letter, await self._send(letter)) for letter in letters]
            await asyncio.wait_for(
                asyncio.gather(*(f for _, f in pending), return_exceptions=True),
                BROKER_CALL_TIMEOUT,
            )
            for letter, future in pending:
                error = future.exception()
                if isinstance(error, MessageSizeTooLargeError | RecordTooLargeError):
                    await asyncio.wait_for(
                        await self._send(letter, omit_value=True), BROKER_CALL_TIMEOUT
                    )
                elif error is not None:
                    raise error
        except (KafkaError, TimeoutError, OSError) as exc:
            raise TransientError(f"dead-letter publish failed: {exc!r}") from exc

    async def _send(self, letter: DeadLetter, *, omit_value: bool = False) -> asyncio.Future[Any]:
        headers = dead_letter_headers(letter)
        value = letter.record.value
        if not omit_value:
            try:
                future: asyncio.Future[Any] = await self._producer.send(
                    self._topic, value=value, key=letter.record.key, headers=headers
                )
                return future
            except (MessageSizeTooLargeError, RecordTooLargeError):
                pass  # larger than this producer may send: omit the value
        size = len(value) if value is not None else 0
        headers += [("x-dlq-value-omitted", b"true"), ("x-dlq-original-size", str(size).encode())]
        omitted: asyncio.Future[Any] = await self._producer.send(
            self._topic, value=b"", key=letter.record.key, headers=headers
        )
        return omitted
