"""`ingest-worker send`: publish each line of a JSONL file to a topic the worker consumes.

Each line is checked first with the worker's own decoder (`decode_record`, the partial-group
rule of the batch handler), so the summary says what the worker will dead-letter and why:
`5 sent; 4 will be dead-lettered: invalid_json 1, schema_violation 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import RejectedPart
from ingest_worker.service.cli_errors import UsageError, started
from ingest_worker.service.config import Settings
from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.contract import Source
from ingest_worker.sources.decode import decode_record, rejected_parts_message
from ingest_worker.sources.registry import SOURCES


def consumed_topics(settings: Settings) -> dict[str, Source]:
    """Every topic the worker consumes and the source decoded on it (as `Worker.consumed_topics`)."""
    return {**settings.source_topics(), settings.topic_commands: COMMANDS}


def dead_letter_reason(source: Source, value: bytes, max_bytes: int) -> tuple[str, str] | None:
    """(reason, message) when the worker would dead-letter `value` consumed on `source`'s topic."""
    try:
        mapped = decode_record(source, value, max_bytes=max_bytes)
    except InvalidSignal as exc:
        return exc.reason.value, exc.message
    if any(isinstance(item, RejectedPart) for item in mapped):
        # The batch handler applies the valid parts and dead-letters the record as well.
        return RejectReason.PARTIALLY_INVALID.value, rejected_parts_message(mapped)
    return None


def read_lines(path: str) -> list[tuple[int, bytes]]:
    """(line number, value) of every non-blank line of `path` (`-`: stdin)."""
    try:
        return list(_lines(path))
    except FileNotFoundError:
        raise UsageError(
            f"ingest-worker send: no such file: {path} (give a JSONL file, or - to read stdin)"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"ingest-worker send: {path} is a directory, not a JSONL file") from None
    except PermissionError:
        raise UsageError(f"ingest-worker send: {path} cannot be read (permission denied)") from None


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    stream = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def summary(sent: int, reasons: Counter[str], validated: bool, *, unsent: int = 0) -> str:
    """`5 sent; 4 will be dead-lettered: invalid_json 1, schema_violation 3`."""
    text = f"{sent} sent"
    if not validated:
        text += " (not validated)"
    elif reasons:
        counts = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        text += f"; {reasons.total()} will be dead-lettered: {counts}"
    if unsent:
        text += f"; {unsent} not sent: larger than the producer accepts"
    return text


def _target(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """(topic, file) from `send TOPIC FILE` or `send --source NAME FILE`."""
    if args.source is not None:
        if args.file is not None:
            raise UsageError(
                "ingest-worker send: with --source, give only the file (the source names the topic)"
            )
        return settings.topic_of(args.source), args.topic
    if args.file is None:
        raise UsageError(
            "ingest-worker send: give a topic and a file, or --source NAME and a file "
            "(see `ingest-worker send --help`)"
        )
    return args.topic, args.file


def make_send(settings_of: Callable[[], Settings]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = settings_of()
        topic, path = _target(args, settings)
        known = consumed_topics(settings)
        source = known.get(topic)
        if source is None and not args.any_topic:
            raise UsageError(
                f"ingest-worker send: the worker does not consume topic {topic!r}; it consumes "
                f"{', '.join(sorted(known))}: pick one (or --source NAME), or add --any-topic"
            )
        values = read_lines(path)
        validate = source is not None and not args.no_validate
        predicted: dict[int, str] = {}  # line number → dead-letter reason
        for number, value in values if validate else ():
            assert source is not None
            found = dead_letter_reason(source, value, settings.max_message_bytes)
            if found is not None:
                predicted[number] = found[0]
                _note(args, f"line {number}: {found[0]}: {found[1]}")
        unsent = asyncio.run(_publish(settings, topic, values, quiet=args.quiet))
        for number in unsent:
            _note(args, f"line {number}: not sent: larger than the producer accepts")
        reasons = Counter(r for number, r in predicted.items() if number not in unsent)
        print(summary(len(values) - len(unsent), reasons, validate, unsent=len(unsent)))
        return 0

    return run


def _note(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr)


async def _publish(
    settings: Settings, topic: str, values: list[tuple[int, bytes]], *, quiet: bool
) -> set[int]:
    """Send every value; return the line numbers of those the producer refused as too large
    (larger than INGEST_MAX_MESSAGE_BYTES and the room for headers: no broker would take them)."""
    from aiokafka.errors import MessageSizeTooLargeError
    from rich.console import Console
    from rich.progress import Progress

    from ingest_worker.service.kafka_clients import make_producer

    unsent: set[int] = set()
    async with started(make_producer(settings), settings) as producer:
        shown = not quiet and sys.stderr.isatty()  # a progress bar only where someone watches
        with Progress(console=Console(stderr=True), disable=not shown, transient=True) as progress:
            task = progress.add_task(f"sending to {topic}", total=len(values))
            futures = []
            for number, value in values:
                try:
                    future = await producer.send(topic, value=value)
                except MessageSizeTooLargeError:
                    unsent.add(number)
                    progress.advance(task)
                    continue
                future.add_done_callback(lambda _: progress.advance(task))
                futures.append(future)
            await asyncio.gather(*futures)
    return unsent


def add_send_command(sub: Any, settings_of: Callable[[], Settings], dev_help: str) -> None:
    send = sub.add_parser(
        "send",
        help="publish each line of a JSONL file (or - for stdin) to a topic, checked first "
        "as the worker will check it",
    )
    send.add_argument("topic", help="a topic the worker consumes (with --source: the file)")
    send.add_argument(
        "file", nargs="?", help="a JSONL file, one record value per line (- reads stdin)"
    )
    send.add_argument(
        "--source",
        choices=[source.name for source in SOURCES],
        metavar="NAME",
        help="send to the configured topic of this source instead of naming a topic: "
        + ", ".join(source.name for source in SOURCES),
    )
    send.add_argument(
        "--any-topic",
        action="store_true",
        help="send even to a topic the worker does not consume (nothing is validated then)",
    )
    send.add_argument(
        "--no-validate",
        action="store_true",
        help="skip checking each line with the worker's decoder before sending",
    )
    send.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no per-line reasons; only the summary line",
    )
    send.add_argument("--dev", action="store_true", help=dev_help)
    send.set_defaults(func=make_send(settings_of))
