"""Retries of transient faults: capped exponential backoff with full jitter, until the operation
succeeds or the worker stops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from ingest_worker.core.errors import ShutdownRequested, TransientError
from ingest_worker.metrics import Metrics

log = structlog.get_logger("ingest_worker.pipeline")

T = TypeVar("T")


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter."""

    initial: float
    maximum: float
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    stopping: asyncio.Event,
    metrics: Metrics,
    on_fault: Callable[[bool], None] | None = None,
) -> T:
    """Run `operation` until it succeeds; transient faults are retried, never surfaced as data errors.

    `on_fault(True)` is called on the first fault and `on_fault(False)` on recovery (readiness).
    Raises ShutdownRequested if the worker is stopping while it waits.
    """
    faulted = False
    while True:
        try:
            result = await operation()
        except TransientError as exc:
            if not faulted and on_fault is not None:
                on_fault(True)
            faulted = True
            metrics.errors.labels(component=what, kind=type(exc.__cause__ or exc).__name__).inc()
            delay = backoff.next_delay()
            log.warning("transient_fault", component=what, error=str(exc), retry_in=round(delay, 3))
            try:
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise ShutdownRequested(f"stopping while retrying {what}") from exc
        else:
            if faulted and on_fault is not None:
                on_fault(False)
            return result
