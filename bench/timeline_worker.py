"""`ingest-worker run` with a per-batch timeline (used by the bench's saturation phase).

Usage: python -m bench.timeline_worker OUTPUT.jsonl  (configured by INGEST_* like the worker).

Wraps, from outside and without changing the worker, the steps of the batch path with a clock
and writes one JSON line per interval when the worker exits (SIGTERM): `fetch` (the consumer's
`getmany`), and per batch (its number `b`, in consumption order) `handle` (the consume loop
hands it over until the loop may fetch again), `decode` (`BatchProcessor.prepare`: parse,
validate, map), `turn` (waiting until the batch before holds its locks), `store` (the
transaction, from the lock-turn wait to the commit), `plan` (`BatchPlan.compute`, summed per
chunk), `chunk_wait` (waiting for the previous chunk's statement), `tx_commit` (COMMIT),
`offset_commit` (the consumer's `commit`); and `publish` (each `OutboxPublisher.publish_round`
that published events, with their number). Times are `time.monotonic()` seconds.

A step that does not exist under its name any more (the worker was refactored) is skipped and
named in the output's `missing` line: the timeline is an observer, never a reason to fail.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH: contextvars.ContextVar[int | None] = contextvars.ContextVar("bench_batch", default=None)
_rows: list[tuple[Any, ...]] = []
_missing: list[str] = []
_numbers = itertools.count()


def _record(step: str, started: float, extra: Any = None) -> None:
    _rows.append((step, BATCH.get(), started, time.monotonic(), extra))


def _wrap_async(owner: Any, name: str, step: str, *, new_batch: bool = False) -> None:
    original = getattr(owner, name, None)
    if original is None:
        _missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
        return

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        token = BATCH.set(next(_numbers)) if new_batch else None
        started = time.monotonic()
        try:
            result = await original(*args, **kwargs)
        finally:
            extra = None
            _record(step, started, extra)
            if token is not None:
                BATCH.reset(token)
        return result

    setattr(owner, name, timed)


def _wrap_sync(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name, None)
    if original is None:
        _missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            _record(step, started)

    setattr(owner, name, timed)


def _wrap_publish(owner: Any) -> None:
    original = getattr(owner, "publish_round", None)
    if original is None:
        _missing.append("OutboxPublisher.publish_round")
        return

    @functools.wraps(original)
    async def timed(self: Any) -> Any:
        started = time.monotonic()
        published = await original(self)
        if published:
            _rows.append(("publish", None, started, time.monotonic(), published))
        return published

    owner.publish_round = timed


class _TimedEvent:
    """The previous batch's `locked` event; `wait` is timed as this batch's `turn`."""

    def __init__(self, event: Any) -> None:
        self._event = event

    async def wait(self) -> Any:
        started = time.monotonic()
        try:
            return await self._event.wait()
        finally:
            _record("turn", started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


def install() -> None:
    """Wrap the batch path's steps (each only if it exists under that name)."""
    import asyncpg.transaction
    from aiokafka import AIOKafkaConsumer

    from ingest_worker.core import plan
    from ingest_worker.delivery import batches, outbox, writers
    from ingest_worker.store import chunks, incidents

    _wrap_async(AIOKafkaConsumer, "getmany", "fetch")
    _wrap_async(AIOKafkaConsumer, "commit", "offset_commit")
    _wrap_async(writers.WriterChain, "submit", "handle", new_batch=True)
    _wrap_sync(batches.BatchProcessor, "prepare", "decode")
    _wrap_async(incidents, "_apply_batch", "store")
    _wrap_sync(plan.BatchPlan, "compute", "plan")
    _wrap_async(chunks.ChunkPipeline, "__aexit__", "chunk_wait")
    _wrap_async(asyncpg.transaction.Transaction, "_Transaction__commit", "tx_commit")
    _wrap_publish(outbox.OutboxPublisher)
    turn = getattr(writers, "LockTurn", None)
    if turn is None:
        _missing.append("writers.LockTurn")
    else:

        def timed_turn(after: Any, locked: Any) -> Any:
            return turn(_TimedEvent(after) if after is not None else None, locked)

        writers.LockTurn = timed_turn  # type: ignore[assignment,misc]


def dump(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"missing": _missing}) + "\n")
        for step, batch, started, ended, extra in _rows:
            out.write(json.dumps([step, batch, round(started, 6), round(ended, 6), extra]) + "\n")


def main(argv: list[str] | None = None, run: Callable[[list[str]], int] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0])
    install()
    if run is None:
        from ingest_worker.service.cli import main as run
    try:
        return run(["run"])
    finally:
        dump(path)


if __name__ == "__main__":
    raise SystemExit(main())
