"""Delivery against real HTTP receivers through the real broker: signed formats, failures that
recover, Retry-After, a hanging endpoint, an endpoint down past maxAge (parked, then replayed),
and order per incident."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ingest_worker.notify.replay import replay
from ingest_worker.service.cli_notify import notifier_config
from ingest_worker.service.config import Settings
from tests.notify.conftest import publish, running, subscriptions
from tests.notify.events import SECRET_A, SECRET_B, event_record
from tests.notify.receivers import Answer, Receiver, Request, always
from tests.notify.standard_webhooks import verify
from tests.support import TopicReader

pytestmark = pytest.mark.integration

LIFECYCLE = ("incident.created", "incident.acknowledged", "incident.resolved")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def lifecycle(incident: str) -> list[Any]:
    return [event_record(incident, seq, kind) for seq, kind in enumerate(LIFECYCLE, start=1)]


def seqs(requests: list[Request], fmt: str = "generic") -> list[tuple[str, int]]:
    out = []
    for request in requests:
        document = request.json()
        event = document["event"] if fmt == "generic" else document["data"]
        out.append((event["incident_id"], event["seq"]))
    return out


async def test_signed_notifications_reach_receivers_in_every_format_in_order(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings(console_url="https://console.example.com")
    generic: Receiver = await receivers(always(Answer()))
    cloud: Receiver = await receivers(always(Answer()))
    slack: Receiver = await receivers(always(Answer(body=b"ok")))
    subs = subscriptions(
        {"id": "gen", "url": generic.url, "format": "generic", "secrets": [SECRET_A, SECRET_B]},
        {"id": "ce", "url": cloud.url, "format": "cloudevents", "secrets": [SECRET_A]},
        {"id": "sl", "url": slack.url, "format": "slack", "secrets": [SECRET_B]},
    )
    async with running(settings, subs) as notifier:
        await publish(settings, lifecycle("inc-a"))
        got = await generic.wait_for(3)
        await cloud.wait_for(3)
        await slack.wait_for(3)
        registry = notifier.metrics.registry
        assert sample(registry, "ingest_notify_delivered_total", subscription="gen") == 3
        assert sample(registry, "ingest_notify_latency_seconds_count", subscription="ce") == 3
    assert [r.json()["type"] for r in got] == list(LIFECYCLE)
    for request in got:
        verify(SECRET_A, request.headers, request.body)
        verify(SECRET_B, request.headers, request.body)
        assert request.headers["webhook-id"] == request.json()["id"]
        assert request.headers["content-type"] == "application/json"
    for request in cloud.requests:
        verify(SECRET_A, request.headers, request.body)
        assert request.headers["content-type"] == "application/cloudevents+json"
        assert request.json()["specversion"] == "1.0"
    assert [r.json()["type"] for r in cloud.requests] == list(LIFECYCLE)
    texts = [r.json()["text"] for r in slack.requests]
    assert "https://console.example.com/incidents/inc-a" in texts[0] and "RESOLVED" in texts[2]
    for request in slack.requests:
        verify(SECRET_B, request.headers, request.body)


async def test_filters_and_tenants_choose_the_receivers(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings()
    red_only: Receiver = await receivers(always(Answer()))
    acme: Receiver = await receivers(always(Answer()))
    subs = subscriptions(
        {"id": "red", "url": red_only.url, "format": "generic",
         "filter": {"minSeverity": "RED", "types": ["incident.created"]}},
        {"id": "acme", "url": acme.url, "format": "generic", "tenant": "acme"},
    )  # fmt: skip
    records = [
        event_record("y", 1, "incident.created", severity="YELLOW"),
        event_record("r", 1, "incident.created"),
        event_record("r", 2, "incident.acknowledged"),
        event_record("t", 1, "incident.created", tenant="acme"),
    ]
    async with running(settings, subs) as notifier:
        await publish(settings, records)
        await red_only.wait_for(1)
        await acme.wait_for(1)
        # every record settled: the committed offsets reach the end of each partition
        await _all_committed(notifier, len(records))
    assert seqs(red_only.requests) == [("r", 1)]
    assert [r.json()["tenant"] for r in acme.requests] == ["acme"]


async def _all_committed(notifier: Any, count: int) -> None:
    from tests.support import eventually

    def done() -> bool:
        moves = notifier.book._partitions
        return notifier.book.pending() == 0 and (
            sum(book.committed or 0 for book in moves.values()) == count
        )

    await eventually(done, timeout=20, what="offsets committed")


async def test_a_failing_receiver_recovers_and_each_incident_stays_in_order(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings(notify_lanes=2)
    flaky: Receiver = await receivers(
        lambda i, _r: Answer(status=500, body=b"boom") if i < 4 else Answer()
    )
    subs = subscriptions({"id": "flaky", "url": flaky.url, "format": "generic"})
    async with running(settings, subs) as notifier:
        await publish(settings, lifecycle("inc-a") + lifecycle("inc-b"))
        await flaky.wait_for(10)
        registry = notifier.metrics.registry
        assert sample(registry, "ingest_notify_retries_total", subscription="flaky") == 4
        assert sample(registry, "ingest_notify_failures_total", subscription="flaky",
                      reason="http_500") == 4  # fmt: skip
    delivered = [r for i, r in enumerate(flaky.requests) if i >= 4]
    for incident in ("inc-a", "inc-b"):
        attempts = [s for inc, s in seqs(flaky.requests) if inc == incident]
        # retried events repeat, but a later event never goes before an earlier one is through
        assert attempts == sorted(attempts), attempts
        assert [s for inc, s in seqs(delivered) if inc == incident] == [1, 2, 3]


async def test_429_with_retry_after_is_honoured(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings()
    busy: Receiver = await receivers(
        lambda i, _r: Answer(status=429, headers=(("Retry-After", "2"),)) if i == 0 else Answer()
    )
    subs = subscriptions({"id": "busy", "url": busy.url, "format": "generic"})
    async with running(settings, subs):
        await publish(settings, [event_record("inc-a", 1, "incident.created")])
        first, second = await busy.wait_for(2)
    # the backoff alone would have retried within 0.4 s
    assert second.at - first.at >= 1.9
    assert second.headers["webhook-id"] == first.headers["webhook-id"]


async def test_a_hanging_receiver_times_out_and_never_delays_another(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings(notify_read_timeout_seconds=1.5)
    hanging: Receiver = await receivers(always(Answer(hang=True)))
    healthy: Receiver = await receivers(always(Answer()))
    subs = subscriptions(
        {"id": "hang", "url": hanging.url, "format": "generic"},
        {"id": "ok", "url": healthy.url, "format": "generic"},
    )
    async with running(settings, subs) as notifier:
        await publish(settings, lifecycle("inc-a"))
        (stuck,) = await hanging.wait_for(1)
        delivered = await healthy.wait_for(3)
        assert all(r.at - stuck.at < 1.0 for r in delivered)  # not held by the hanging one
        first, again = await hanging.wait_for(2)
        assert again.at - first.at >= 1.4  # the read timeout, then a retry of the same event
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        registry = notifier.metrics.registry
        assert sample(registry, "ingest_notify_failures_total", subscription="hang",
                      reason="timeout") >= 1  # fmt: skip


async def test_a_receiver_down_past_max_age_pauses_parks_and_replay_sends_again(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings(notify_pause_seconds=60)
    state = {"down": True}
    endpoint: Receiver = await receivers(
        lambda _i, _r: Answer(status=503, body=b"down") if state["down"] else Answer()
    )
    subs = subscriptions(
        {"id": "down", "url": endpoint.url, "format": "generic", "secrets": [SECRET_A],
         "maxAgeSeconds": 1.5},
    )  # fmt: skip
    records = lifecycle("inc-a")
    async with running(settings, subs) as notifier:
        await publish(settings, records)
        reader = await TopicReader(
            settings.kafka_bootstrap_servers, settings.topic_notifications_dlq
        ).start()
        parked = await reader.read_until(3)
        registry = notifier.metrics.registry
        assert sample(registry, "ingest_notify_paused", subscription="down") == 1
        assert sample(registry, "ingest_notify_parked_total", subscription="down",
                      reason="max_age_exceeded") == 1  # fmt: skip
        assert sample(registry, "ingest_notify_parked_total", subscription="down",
                      reason="subscription_paused") == 2  # fmt: skip
    await reader.stop()
    assert [p.value for p in parked] == [value for _k, value, _h, _t in records]
    first = dict(parked[0].headers)
    assert first["x-notify-subscription"] == b"down"
    assert first["x-notify-reason"] == b"max_age_exceeded"
    assert int(first["x-notify-attempts"]) >= 2
    assert dict(parked[1].headers)["x-notify-reason"] == b"subscription_paused"
    tried = len(endpoint.requests)
    assert tried >= 2 and all(r.json()["event"]["seq"] == 1 for r in endpoint.requests)

    state["down"] = False
    config = notifier_config(settings, dev=False)
    (result,) = await replay(subs, config, max_seconds=5)
    assert result.sent == 3 and result.failed is None
    resent = endpoint.requests[tried:]
    assert [r.json()["event"]["seq"] for r in resent] == [1, 2, 3]
    for request in resent:
        verify(SECRET_A, request.headers, request.body)
    (again,) = await replay(subs, config, max_seconds=5)
    assert again.sent == 0  # the replay position moved past what was sent


async def test_two_replicas_in_one_group_deliver_everything_and_commit_it(
    notify_settings: Callable[..., Settings], receivers: Any
) -> None:
    settings = notify_settings()
    endpoint: Receiver = await receivers(always(Answer()))
    subs = subscriptions({"id": "both", "url": endpoint.url, "format": "generic"})
    records = [event_record(f"inc-{n}", 1, "incident.created") for n in range(30)]
    async with running(settings, subs) as first, running(settings, subs) as second:
        await publish(settings, records)
        await endpoint.wait_for(30)
        await _all_committed_together([first, second], 30)
    ids = {r.headers["webhook-id"] for r in endpoint.requests}
    assert ids == {f"inc-{n}-evt-1" for n in range(30)}


async def _all_committed_together(notifiers: list[Any], count: int) -> None:
    from tests.support import eventually

    def done() -> bool:
        committed: dict[tuple[str, int], int] = {}
        for notifier in notifiers:
            for key, book in notifier.book._partitions.items():
                committed[key] = max(committed.get(key, 0), book.committed or 0)
        return sum(committed.values()) == count

    await eventually(done, timeout=30, what="offsets committed by the replicas")
