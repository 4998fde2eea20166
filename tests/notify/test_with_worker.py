"""The tour as users take it: the real worker turns a signal and two commands into events, and
the notifier delivers them, signed and in order, with the incident as the worker wrote it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from ingest_worker.service.cli_lifecycle import command_message
from ingest_worker.service.config import Settings
from tests.integration.test_worker_commands import KEY, args, red
from tests.notify.conftest import running, subscriptions
from tests.notify.events import SECRET_A
from tests.notify.receivers import Answer, Receiver, always
from tests.notify.standard_webhooks import verify
from tests.support import encode, eventually, produce, publish_and_wait, start_worker

pytestmark = pytest.mark.integration


async def test_created_acknowledged_resolved_reach_the_subscribers_in_order(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool, receivers: Any
) -> None:
    generic: Receiver = await receivers(always(Answer()))
    slack: Receiver = await receivers(always(Answer()))
    settings = make_settings(
        notify_allowed_networks=["127.0.0.0/8"],
        notify_group_id=f"notify-{make_settings().group_id}",
        console_url="http://console.test",
    )
    subs = subscriptions(
        {"id": "gen", "url": generic.url, "format": "generic", "secrets": [SECRET_A]},
        {"id": "sl", "url": slack.url, "format": "slack",
         "filter": {"types": ["incident.created", "incident.resolved"]}},
    )  # fmt: skip
    worker = await start_worker(settings)
    try:
        async with running(settings, subs):
            await produce(settings, settings.topic_deploy_status, [encode(red())])

            async def created() -> bool:
                return bool(await db_pool.fetchval("SELECT count(*) FROM incidents"))

            await eventually(created, what="the incident")
            ack = command_message(args(KEY), "acknowledge")
            assert (await publish_and_wait(settings, ack, 30) or {}).get("outcome") == "applied"
            resolve = command_message(args(KEY, rationale="rolled back"), "resolve")
            assert (await publish_and_wait(settings, resolve, 30) or {}).get("outcome") == "applied"
            delivered = await generic.wait_for(3)
            await slack.wait_for(2)
    finally:
        await worker.stop()
    documents = [r.json() for r in delivered]
    assert [d["type"] for d in documents] == [
        "incident.created", "incident.acknowledged", "incident.resolved",
    ]  # fmt: skip
    assert [d["incident"]["status"] for d in documents] == ["OPEN", "ACKNOWLEDGED", "RESOLVED"]
    assert {d["tenant"] for d in documents} == {"default"}
    assert all(d["incident"]["incident_key"] == KEY for d in documents)
    stored = await db_pool.fetch("SELECT id FROM incident_events ORDER BY seq")
    assert [d["event"]["id"] for d in documents] == [str(row["id"]) for row in stored]
    for request in delivered:
        verify(SECRET_A, request.headers, request.body)
        assert request.headers["webhook-id"] == request.json()["event"]["id"]
    texts = [r.json()["text"] for r in slack.requests]
    assert "RED" in texts[0] and "OPEN" in texts[0] and "RESOLVED" in texts[1]
    assert f"http://console.test/incidents/{documents[0]['incident']['id']}" in texts[0]
