"""`ingest-worker dead-letters`: read the dead-letter topic (`signals.dlq` by default).

Each dead letter is the original record (value, key, headers) plus the `x-dlq-*` headers the
worker adds: reason, error, source topic / partition / offset, and when it failed. The command
reads the topic from its beginning without a consumer group (it commits nothing, so it never
disturbs anyone), prints every letter and stops at the end, or keeps waiting with `--follow`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from ingest_worker.service.cli_errors import started
from ingest_worker.service.config import Settings

#: Text output shows at most this much of a value (`--json` shows all of it).
VALUE_PREVIEW_CHARS = 2000


def dead_letter(record: Any) -> dict[str, Any]:
    """One dead-letter record as data: the `x-dlq-*` headers and the original value."""
    headers: dict[str, str] = {}
    for key, value in record.headers or ():
        if key.startswith("x-dlq-"):
            headers[key.removeprefix("x-dlq-")] = bytes(value).decode("utf-8", errors="replace")
    item: dict[str, Any] = {
        "reason": headers.get("reason"),
        "error": headers.get("error"),
        "sourceTopic": headers.get("source-topic"),
        "sourcePartition": _integer(headers.get("source-partition")),
        "sourceOffset": _integer(headers.get("source-offset")),
        "failedAt": headers.get("failed-at"),
        "partition": record.partition,
        "offset": record.offset,
        "key": None if record.key is None else bytes(record.key).decode("utf-8", "replace"),
    }
    value = bytes(record.value or b"")
    if headers.get("value-omitted") == "true":
        item["valueOmitted"] = True
        item["originalSize"] = _integer(headers.get("original-size"))
    try:
        item["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        item["value"] = None
        item["valueBase64"] = base64.b64encode(value).decode()
    return item


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def text_lines(item: Mapping[str, Any]) -> list[str]:
    """How one dead letter reads in a terminal: a heading line, the error, the value."""
    where = f"{item['sourceTopic']}/{item['sourcePartition']}@{item['sourceOffset']}"
    lines = [f"{item['failedAt']}  {item['reason']}  {where}", f"  error: {item['error']}"]
    if item.get("valueOmitted"):
        lines.append(
            f"  value: omitted ({item.get('originalSize')} bytes; the original stays at {where})"
        )
    elif item["value"] is None:
        lines.append(f"  value (not UTF-8, base64): {item['valueBase64'][:VALUE_PREVIEW_CHARS]}")
    else:
        value: str = item["value"]
        if len(value) > VALUE_PREVIEW_CHARS:
            value = f"{value[:VALUE_PREVIEW_CHARS]}… ({len(value)} characters; --json shows all)"
        lines.append(f"  value: {value}")
    return lines


async def read_dead_letters(
    settings: Settings,
    emit: Callable[[dict[str, Any]], None],
    *,
    follow: bool,
    reasons: frozenset[str],
) -> int:
    """Emit every dead letter (of `reasons`, when given) from the beginning; return how many.
    Stops at the end of the topic unless `follow`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ingest_worker.service.kafka_clients import client_options

    topic = settings.topic_dead_letter
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None)
    count = 0
    async with started(consumer, settings):
        assigned: list[TopicPartition] = []
        while True:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if len(partitions) > len(assigned):
                assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
                consumer.assign(assigned)
                await consumer.seek_to_beginning(*assigned)
            if assigned or not follow:
                break
            await asyncio.sleep(1.0)  # --follow before the topic exists: it appears with the first
        if not assigned:
            return 0
        ends = await consumer.end_offsets(assigned)
        while follow or await _behind(consumer, ends):
            batch = await consumer.getmany(*assigned, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    item = dead_letter(record)
                    if not reasons or item["reason"] in reasons:
                        emit(item)
                        count += 1
    return count


async def _behind(consumer: Any, ends: Mapping[Any, int]) -> bool:
    """Whether some partition has records left before the end offsets read at the start."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def make_dead_letters(settings_of: Callable[[], Settings]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = settings_of()

        def emit(item: dict[str, Any]) -> None:
            if args.json:
                print(json.dumps(item), flush=True)
            else:
                print("\n".join(text_lines(item)), flush=True)

        reasons = frozenset(args.reason or ())
        count = asyncio.run(read_dead_letters(settings, emit, follow=args.follow, reasons=reasons))
        if not args.json:
            print(f"({count} dead letter(s) on {settings.topic_dead_letter})")
        return 0

    return run


def add_dead_letters_command(sub: Any, settings_of: Callable[[], Settings], dev_help: str) -> None:
    parser = sub.add_parser(
        "dead-letters",
        help="read the dead-letter topic: why each record was refused, where it came from, "
        "and its original value",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="after the existing ones, keep printing new dead letters until Ctrl-C",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per dead letter and line, with the whole original value",
    )
    parser.add_argument(
        "--reason",
        action="append",
        metavar="REASON",
        help="only dead letters with this reason, e.g. invalid_json (repeatable)",
    )
    parser.add_argument("--dev", action="store_true", help=dev_help)
    parser.set_defaults(func=make_dead_letters(settings_of))
