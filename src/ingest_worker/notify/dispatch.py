"""Per-subscription delivery: lanes, retries, pausing and parking.

Each subscription has its own lanes (tasks with their own queues): a slow or dead endpoint only
ever holds up its own lanes. The events of one incident always go through the same lane, one
after the other, so a later event waits while an earlier one is retried.

A failed attempt is retried after a capped exponential backoff with jitter, or after the
endpoint's `Retry-After` on 429 and 503. Once an event has been failing for the subscription's
`maxAge` (counted from its first attempt), the subscription is paused: that event, the events
waiting behind it and those that arrive during the pause are parked on the notifications
dead-letter topic, never dropped. A subscription whose backlog passes its bound is paused the
same way, so that memory stays bounded and the other subscriptions keep going.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from ingest_worker.notify.formats import IncidentEvent
from ingest_worker.notify.metrics import NotifyMetrics
from ingest_worker.notify.sender import Outcome
from ingest_worker.notify.subscriptions import Subscription

log = structlog.get_logger("ingest_worker.notify")

REASON_MAX_AGE = "max_age_exceeded"
REASON_PAUSED = "subscription_paused"
REASON_BACKLOG = "backlog_full"


@dataclass
class Item:
    """One event on its way to one subscription."""

    event: IncidentEvent
    #: Called once the event is delivered or parked (the offset may then be committed).
    settle: Callable[[], None]
    #: False once the partition was revoked: the new owner delivers it, this member drops it.
    owned: Callable[[], bool] = lambda: True
    first_attempt: float | None = None
    attempts: int = 0
    enqueued: float = field(default_factory=time.monotonic)


Send = Callable[[Subscription, IncidentEvent], Awaitable[Outcome]]
Park = Callable[[Subscription, Item, str], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    initial: float
    cap: float
    queue_size: int
    lanes: int
    pause_seconds: float

    def delay(self, attempts: int) -> float:
        """Backoff after the `attempts`-th failure: exponential, capped, jittered (50–100 %)."""
        base = min(self.cap, self.initial * (2 ** min(attempts - 1, 30)))
        return float(base * random.uniform(0.5, 1.0))


class SubscriptionDispatcher:
    """The lanes of one subscription."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        send: Send,
        park: Park,
        policy: RetryPolicy,
        metrics: NotifyMetrics,
    ) -> None:
        self.subscription = subscription
        self._send = send
        self._park = park
        self._policy = policy
        self._metrics = metrics
        self._queues: list[asyncio.Queue[Item]] = [asyncio.Queue() for _ in range(policy.lanes)]
        self._tasks: list[asyncio.Task[None]] = []
        self._size = 0
        self.paused_until: float | None = None
        #: Set while paused: wakes the lanes waiting to retry, so that they park at once.
        self._pause_signal = asyncio.Event()
        self._label = subscription.id
        metrics.paused.labels(self._label).set(0)
        metrics.queued.labels(self._label).set(0)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lane(q), name=f"notify-{self._label}-{i}")
            for i, q in enumerate(self._queues)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def size(self) -> int:
        return self._size

    def paused(self) -> bool:
        if self.paused_until is None:
            return False
        if time.monotonic() >= self.paused_until:
            self.paused_until = None
            self._pause_signal.clear()
            self._metrics.paused.labels(self._label).set(0)
            log.info("subscription_resumed", subscription=self._label)
            return False
        return True

    def pause(self, reason: str) -> None:
        if self.paused_until is None:
            log.warning(
                "subscription_paused",
                subscription=self._label,
                reason=reason,
                url=self.subscription.safe_url(),
                pause_seconds=self._policy.pause_seconds,
            )
        self.paused_until = time.monotonic() + self._policy.pause_seconds
        self._pause_signal.set()
        self._metrics.paused.labels(self._label).set(1)

    def offer(self, item: Item) -> None:
        """Queue an event (never blocks). A full backlog pauses the subscription."""
        if self._size >= self._policy.queue_size and not self.paused():
            self.pause(REASON_BACKLOG)
        lane = zlib.crc32(item.event.incident_id.encode()) % len(self._queues)
        self._size += 1
        self._metrics.queued.labels(self._label).set(self._size)
        self._queues[lane].put_nowait(item)

    async def _lane(self, queue: asyncio.Queue[Item]) -> None:
        while True:
            item = await queue.get()
            try:
                if item.owned():
                    await self._handle(item)
            finally:
                self._size -= 1
                self._metrics.queued.labels(self._label).set(self._size)

    async def _handle(self, item: Item) -> None:
        while True:
            if self.paused():
                await self._park_item(item, REASON_PAUSED)
                return
            now = time.monotonic()
            if item.first_attempt is None:
                item.first_attempt = now
            item.attempts += 1
            outcome = await self._send(self.subscription, item.event)
            if outcome.delivered:
                self._delivered(item)
                return
            if not item.owned():
                return
            self._metrics.failed.labels(self._label, outcome.reason).inc()
            elapsed = time.monotonic() - item.first_attempt
            max_age = self.subscription.max_age_seconds
            if elapsed >= max_age:
                self.pause(REASON_MAX_AGE)
                await self._park_item(item, REASON_MAX_AGE)
                return
            wait = outcome.retry_after
            if wait is None:
                wait = self._policy.delay(item.attempts)
            wait = min(wait, max_age - elapsed)
            log.info(
                "notification_retry",
                subscription=self._label,
                event_id=item.event.id,
                reason=outcome.reason,
                status=outcome.status,
                attempts=item.attempts,
                retry_in=round(wait, 3),
                detail=outcome.detail or None,
            )
            self._metrics.retried.labels(self._label).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pause_signal.wait(), wait)

    def _delivered(self, item: Item) -> None:
        self._metrics.delivered.labels(self._label).inc()
        latency = max(0.0, time.time() - item.event.published_ms / 1000)
        self._metrics.latency.labels(self._label).observe(latency)
        item.settle()

    async def _park_item(self, item: Item, reason: str) -> None:
        await self._park(self.subscription, item, reason)
        self._metrics.parked.labels(self._label, reason).inc()
        log.warning(
            "notification_parked",
            subscription=self._label,
            event_id=item.event.id,
            reason=reason,
            attempts=item.attempts,
        )
        item.settle()
