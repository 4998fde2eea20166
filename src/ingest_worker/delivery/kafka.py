"""The dead-letter sink: bad records published byte for byte with their reason headers.

Records are published with aiokafka's producer directly: FastStream's publish API takes headers as
text and always adds `content-type`, while the dead-letter contract keeps the original headers
byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from ingest_worker.core.errors import TransientError
from ingest_worker.delivery.batches import DeadLetter

#: Bound on every individual broker call made outside the consume loop.
BROKER_CALL_TIMEOUT = 15.0


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers unchanged, then the `x-dlq-*` headers"""
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
