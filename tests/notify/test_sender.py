"""Outbound limits of one attempt, against real receivers: redirects, response size, refused
destinations."""

from __future__ import annotations

import time
from typing import Any

from ingest_worker.notify.destinations import DestinationPolicy
from ingest_worker.notify.formats import decode_event
from ingest_worker.notify.sender import Sender, SenderConfig
from tests.notify.conftest import subscriptions
from tests.notify.events import event_record
from tests.notify.receivers import Answer, Receiver, always

EVENT = decode_event(*event_record("inc-a", 1, "incident.created"))


def sender(*, loopback: bool = True) -> Sender:
    policy = DestinationPolicy.from_config([], allow_loopback=loopback)
    return Sender(SenderConfig(1.0, 1.0, None, policy))


async def test_a_redirect_to_another_host_is_refused(receivers: Any) -> None:
    other: Receiver = await receivers(always(Answer()))
    # same port, another host name: another origin
    moved = f"http://localhost:{other.port}/elsewhere"
    origin: Receiver = await receivers(always(Answer(status=307, headers=(("Location", moved),))))
    (sub,) = subscriptions({"id": "r", "url": origin.url, "format": "generic"})
    client = sender()
    try:
        outcome = await client.send(sub, EVENT)
    finally:
        await client.close()
    assert not outcome.delivered and outcome.reason == "redirect_refused"
    assert other.requests == [] and len(origin.requests) == 1


async def test_a_redirect_on_the_same_origin_is_followed(receivers: Any) -> None:
    target: Receiver = await receivers(
        lambda i, r: (
            Answer(status=308, headers=(("Location", "/moved"),)) if r.path == "/hook" else Answer()
        )
    )
    (sub,) = subscriptions({"id": "r", "url": target.url, "format": "generic"})
    client = sender()
    try:
        outcome = await client.send(sub, EVENT)
    finally:
        await client.close()
    assert outcome.delivered
    assert [r.path for r in target.requests] == ["/hook", "/moved"]
    assert target.requests[1].body == target.requests[0].body


async def test_a_huge_error_body_is_not_read(receivers: Any) -> None:
    huge = b"x" * (64 * 1024 * 1024)
    target: Receiver = await receivers(always(Answer(status=500, body=huge)))
    (sub,) = subscriptions({"id": "r", "url": target.url, "format": "generic"})
    client = sender()
    started = time.monotonic()
    try:
        outcome = await client.send(sub, EVENT)
    finally:
        await client.close()
    assert outcome.reason == "http_500" and len(outcome.detail) <= 200
    assert time.monotonic() - started < 5


async def test_loopback_is_refused_unless_allowed_and_nothing_is_sent(receivers: Any) -> None:
    target: Receiver = await receivers(always(Answer()))
    (sub,) = subscriptions({"id": "r", "url": target.url, "format": "generic"})
    client = sender(loopback=False)
    try:
        outcome = await client.send(sub, EVENT)
    finally:
        await client.close()
    assert outcome.reason == "destination_refused"
    assert target.requests == []
