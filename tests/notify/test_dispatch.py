"""The dispatcher's pause rules, with an in-memory endpoint and parking (pure logic: the HTTP and
Kafka sides are covered against real receivers and the real broker in test_delivery)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from ingest_worker.notify.dispatch import (
    REASON_BACKLOG,
    REASON_PAUSED,
    Item,
    RetryPolicy,
    SubscriptionDispatcher,
)
from ingest_worker.notify.formats import IncidentEvent, decode_event
from ingest_worker.notify.metrics import NotifyMetrics
from ingest_worker.notify.sender import Outcome
from ingest_worker.notify.subscriptions import Subscription
from tests.notify.conftest import subscriptions
from tests.notify.events import event_record


class Settled(list[str]):
    """Event ids in the order they were settled; `until(n)` awaits the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def add(self, event_id: str) -> None:
        self.append(event_id)
        self.changed.set()

    async def until(self, count: int) -> None:
        while len(self) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


def _items(count: int, settled: Settled) -> list[Item]:
    items = []
    for n in range(count):
        event = decode_event(*event_record("inc-a", n + 1, "incident.updated"))
        items.append(Item(event, settle=lambda e=event: settled.add(e.id)))
    return items


async def test_a_full_backlog_pauses_and_parks_everything_queued_then_resumes() -> None:
    (sub,) = subscriptions({"id": "slow", "url": "https://example.com/", "format": "generic"})
    release = asyncio.Event()
    in_flight = asyncio.Event()
    sent: list[str] = []
    parked: list[tuple[str, str]] = []

    async def send(_s: Subscription, event: IncidentEvent) -> Outcome:
        sent.append(event.id)
        in_flight.set()
        await release.wait()
        return Outcome(True, "delivered", 200)

    async def park(_s: Subscription, item: Item, reason: str) -> None:
        parked.append((item.event.id, reason))

    policy = RetryPolicy(initial=0.01, cap=0.01, queue_size=3, lanes=1, pause_seconds=0.2)
    metrics = NotifyMetrics(CollectorRegistry())
    dispatcher = SubscriptionDispatcher(sub, send=send, park=park, policy=policy, metrics=metrics)
    dispatcher.start()
    settled = Settled()
    items = _items(5, settled)
    try:
        dispatcher.offer(items[0])
        await in_flight.wait()  # the first is being sent and does not come back
        for item in items[1:5]:
            dispatcher.offer(item)
        assert dispatcher.paused()  # the backlog had reached three
        assert (
            metrics.registry.get_sample_value("ingest_notify_paused", {"subscription": "slow"}) == 1
        )
        release.set()
        await settled.until(5)
        # the one in flight was delivered; those queued behind it were parked, in order
        assert sent == [items[0].event.id]
        assert parked == [(i.event.id, REASON_PAUSED) for i in items[1:5]]
        assert settled == [i.event.id for i in items]
        await asyncio.sleep(0.25)  # the pause ends (a timer: nothing to await)
        later = _items(6, settled)[5]
        dispatcher.offer(later)
        await settled.until(6)
        assert sent[-1] == later.event.id
        assert (
            metrics.registry.get_sample_value("ingest_notify_paused", {"subscription": "slow"}) == 0
        )
    finally:
        await dispatcher.stop()
    assert REASON_BACKLOG == "backlog_full"
