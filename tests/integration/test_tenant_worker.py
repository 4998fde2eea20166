"""Tenants through the running worker and the real broker: the `tenant` header (or the topic
prefix) decides; identical keys in two tenants never touch each other; ids, events, commands,
receipts and dead letters are scoped by tenant."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest_worker.core.canonical import incident_id
from ingest_worker.service.config import Settings
from tests.support import encode, eventually, header, produce, reading, start_worker

pytestmark = pytest.mark.integration

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"


def red(deploy: str = "deploy-1", **extra: object) -> dict[str, object]:
    return {
        "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z", "signals": {},
        "reasons": [], "deployId": deploy, **extra,
    }  # fmt: skip


def command(verb: str, command_id: str, **target: str) -> bytes:
    return encode({
        "commandId": command_id, "type": verb, **target, "issuedAt": "2024-01-01T00:10:00Z",
        "actor": {"type": "human", "id": "alice", "roles": ["ONCALL_ENGINEER"]},
    })  # fmt: skip


async def _rows(pool: asyncpg.Pool, query: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(query)]


async def test_two_tenants_with_identical_keys_interleaved_through_the_worker(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    acme, none = [("tenant", b"acme")], [("tenant", b"")]
    try:
        async with (
            reading(settings, settings.topic_incident_events) as events,
            reading(settings, settings.topic_command_results) as results,
            reading(settings, settings.topic_dead_letter) as dlq,
        ):
            # Interleaved: the same signal for default (no header, then an empty one) and acme.
            topic = settings.topic_deploy_status
            await produce(settings, topic, [encode(red())])
            await produce(settings, topic, [encode(red())], headers=acme)
            await produce(settings, topic, [encode(red(attempt=2))], headers=none)
            await produce(settings, topic, [encode(red())], headers=[("tenant", b"Not_Valid")])
            await events.read_until(3)
            [letter] = await dlq.read_until(1)
            # acme acknowledges by key (its own incident) and by default's id (not its own);
            # both tenants use the same commandId.
            default_id = str(incident_id(KEY))
            commands = settings.topic_commands
            await produce(settings, commands, [command("acknowledge", "c-1", incidentKey=KEY)],
                          headers=acme)  # fmt: skip
            await produce(settings, commands,
                          [command("acknowledge", "c-2", incidentId=default_id)],
                          headers=acme)  # fmt: skip
            await produce(settings, commands, [command("acknowledge", "c-1", incidentKey=KEY)])
            outcomes = await results.read_until(3)
            published = await events.read_until(5)
    finally:
        await worker.stop()

    assert header(letter, "x-dlq-reason") == b"invalid_tenant"
    assert letter.value == encode(red())
    incidents = await _rows(
        db_pool, "SELECT tenant, id, incident_key, occurrence_count, status FROM incidents"
    )
    acme_id = incident_id(f"acme/{KEY}")
    assert sorted(incidents, key=lambda r: r["tenant"]) == [
        {"tenant": "acme", "id": acme_id, "incident_key": KEY, "occurrence_count": 1,
         "status": "ACKNOWLEDGED"},
        {"tenant": "default", "id": incident_id(KEY), "incident_key": KEY,
         "occurrence_count": 2, "status": "ACKNOWLEDGED"},
    ]  # fmt: skip
    by_command = {(header(r, "tenant"), r.key): json.loads(r.value) for r in outcomes}
    assert by_command[(b"acme", b"c-1")]["outcome"] == "applied"
    assert by_command[(b"acme", b"c-1")]["incidentId"] == str(acme_id)
    assert by_command[(b"acme", b"c-2")]["reason"] == "unknown_incident"
    assert by_command[(b"default", b"c-1")]["outcome"] == "applied"
    assert {header(r, "ce_tenant") for r in outcomes} == {b"acme", b"default"}
    receipts = await _rows(db_pool, "SELECT tenant, command_id, outcome FROM command_receipts")
    assert sorted((r["tenant"], r["command_id"], r["outcome"]) for r in receipts) == [
        ("acme", "c-1", "applied"),
        ("acme", "c-2", "rejected"),
        ("default", "c-1", "applied"),
    ]
    for record in published:
        body = json.loads(record.value)
        tenant = "acme" if record.key == str(acme_id).encode() else "default"
        assert (body["tenant"], header(record, "tenant"), header(record, "ce_tenant")) == (
            tenant,
            tenant.encode(),
            tenant.encode(),
        )
    evidence = await _rows(db_pool, "SELECT tenant, incident_id FROM incident_evidence")
    created = await db_pool.fetchval(
        "SELECT payload FROM incident_events WHERE tenant = 'acme' AND seq = 1"
    )
    added = len(json.loads(created)["changes"]["evidence_added"])
    assert added > 0
    assert [r["incident_id"] for r in evidence if r["tenant"] == "acme"] == [acme_id] * added
    assert {r["incident_id"] for r in evidence if r["tenant"] == "default"} == {incident_id(KEY)}
    events_rows = await _rows(
        db_pool, "SELECT tenant, incident_id, seq, type FROM incident_events ORDER BY tenant, seq"
    )
    assert [(r["tenant"], r["incident_id"], r["type"]) for r in events_rows] == [
        ("acme", acme_id, "incident.created"),
        ("acme", acme_id, "incident.acknowledged"),
        ("default", incident_id(KEY), "incident.created"),
        ("default", incident_id(KEY), "incident.updated"),
        ("default", incident_id(KEY), "incident.acknowledged"),
    ]


async def test_tenant_from_the_topic_prefix_consumed_by_pattern(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings(tenant_from_topic_prefix=True)
    prefixed = f"globex.{settings.topic_deploy_status}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefixed, 1, 1)])
    finally:
        await admin.close()
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:
            await produce(settings, prefixed, [encode(red())])
            await produce(settings, settings.topic_deploy_status, [encode(red())])
            # The topic decides; a header naming another tenant is refused.
            await produce(settings, prefixed, [encode(red("d-2"))], headers=[("tenant", b"acme")])
            [letter] = await dlq.read_until(1)

            async def both() -> bool:
                return await db_pool.fetchval("SELECT count(*) FROM incidents") == 2

            await eventually(both, what="an incident in each tenant")
    finally:
        await worker.stop()
    assert header(letter, "x-dlq-reason") == b"invalid_tenant"
    rows = await _rows(db_pool, "SELECT tenant, id FROM incidents ORDER BY tenant")
    assert rows == [
        {"tenant": "default", "id": incident_id(KEY)},
        {"tenant": "globex", "id": incident_id(f"globex/{KEY}")},
    ]
    counted = worker.worker.metrics.signals.labels(topic=prefixed, outcome="created")
    assert counted._value.get() == 1
