"""Commands through the running worker and the real broker: the CLI's publish-and-wait gets the
outcome from `incident.command-results`; `timeline` shows the transitions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import asyncpg
import pytest

from ingest_worker.service.cli_lifecycle import command_message
from ingest_worker.service.config import Settings
from tests.support import (
    encode,
    eventually,
    header,
    produce,
    publish_and_wait,
    reading,
    start_worker,
)

pytestmark = pytest.mark.integration


def red(deploy: str = "deploy-1") -> dict[str, object]:
    return {
        "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
        "signals": {}, "reasons": [], "deployId": deploy,
    }  # fmt: skip


KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"


def args(incident: str, **extra: object) -> argparse.Namespace:
    values = {"incident": incident, "actor": "alice", "actor_type": "human",
              "role": ["ONCALL_ENGINEER"], "rationale": None, "note": None, "severity": None,
              "expected_seq": None, "command_id": None}  # fmt: skip
    values.update(extra)
    return argparse.Namespace(**values)


async def test_commands_get_their_outcome_on_the_results_topic(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        await produce(settings, settings.topic_deploy_status, [encode(red())])

        async def created() -> bool:
            return bool(await db_pool.fetchval("SELECT count(*) FROM incidents"))

        await eventually(created, what="the incident")
        ack = command_message(args(KEY, command_id="cli-ack-1"), "acknowledge")
        outcome = await publish_and_wait(settings, ack, 30)
        assert outcome is not None and outcome["outcome"] == "applied"
        assert outcome["status"] == "ACKNOWLEDGED"
        again = await publish_and_wait(settings, ack, 30)  # the same command: the same outcome
        assert again == outcome
        refused = await publish_and_wait(settings, command_message(args(KEY), "resolve"), 30)
        assert refused is not None and refused["reason"] == "rationale_required"
        viewer = command_message(args(KEY, role=["VIEWER"], rationale="x"), "resolve")
        denied = await publish_and_wait(settings, viewer, 30)
        assert denied is not None and denied["reason"] == "not_authorized"
        resolve = command_message(args(KEY, rationale="rolled back"), "resolve")
        resolved = await publish_and_wait(settings, resolve, 30)
        assert resolved is not None and resolved["status"] == "RESOLVED"
        async with reading(settings, settings.topic_command_results) as results:
            records = await results.read_until(5, timeout=30)
    finally:
        await worker.stop()
    types = [header(r, "ce_type") for r in records]
    assert types.count(b"incident.command.applied") == 3  # ack, its repeat, resolve
    ids = [header(r, "ce_id") for r in records if r.key == b"cli-ack-1"]
    assert len(ids) == 2 and len(set(ids)) == 1  # republished with the same ce_id
    receipts = await db_pool.fetchval("SELECT count(*) FROM command_receipts")
    assert receipts == 4
    events = [
        r["type"] for r in await db_pool.fetch("SELECT type FROM incident_events ORDER BY seq")
    ]
    assert events == ["incident.created", "incident.acknowledged", "incident.resolved"]
    body = json.loads(records[-1].value)
    assert body["incidentKey"] == KEY
    assert (
        worker.worker.metrics.commands.labels(type="resolve", outcome="rejected")._value.get() == 2
    )
    # The acknowledge sent twice is one decision; its second outcome is a republication.
    metrics = worker.worker.metrics
    assert metrics.commands.labels(type="acknowledge", outcome="applied")._value.get() == 1
    assert (
        metrics.commands_republished.labels(type="acknowledge", outcome="applied")._value.get() == 1
    )
