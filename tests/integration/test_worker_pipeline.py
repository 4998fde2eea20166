"""The worker end to end in-process, against the real broker and PostgreSQL: signals in, incidents
and events out, bad records dead-lettered with their reason."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from ingest_worker.core.canonical import incident_id
from ingest_worker.service.config import Settings
from tests.support import encode, eventually, header, produce, reading, start_worker

pytestmark = pytest.mark.integration


def deploy_status(
    status: str,
    *,
    deploy_id: str | None = "deploy-1",
    env: str = "prod",
    changed_at: str = "2026-01-01T00:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    signal: dict[str, Any] = {
        "env": env,
        "status": status,
        "changedAt": changed_at,
        "signals": {"checkedAt": changed_at, "health": {"status": "fail"}},
        "reasons": [{"code": "HEALTH_FAIL", "severity": "error", "message": "health check failed"}],
        **extra,
    }
    if deploy_id is not None:
        signal["deployId"] = deploy_id
    return signal


async def incidents(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM incidents")
    return {r["incident_key"]: r for r in rows}


async def test_yellow_and_red_create_incidents_and_green_creates_none(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        await produce(
            settings,
            settings.topic_deploy_status,
            [
                encode(deploy_status("RED", deploy_id="d-red")),
                encode(deploy_status("YELLOW", deploy_id="d-yellow")),
                encode(deploy_status("GREEN", deploy_id="d-green")),
            ],
        )
        await eventually(lambda: _counted(worker, 3), what="three signals processed")
    finally:
        await worker.stop()
    found = await incidents(db_pool)
    assert set(found) == {
        "deploy_status:prod:d-red:2026-01-01T00:00:00Z",
        "deploy_status:prod:d-yellow:2026-01-01T00:00:00Z",
    }
    red = found["deploy_status:prod:d-red:2026-01-01T00:00:00Z"]
    yellow = found["deploy_status:prod:d-yellow:2026-01-01T00:00:00Z"]
    assert (red["severity"], json.loads(red["classification"])["error_code"]) == (
        "RED",
        "DEPLOY_STATUS_RED",
    )
    assert (yellow["severity"], json.loads(yellow["classification"])["error_code"]) == (
        "YELLOW",
        "DEPLOY_STATUS_YELLOW",
    )
    assert red["status"] == "OPEN"
    assert red["id"] == incident_id(red["incident_key"])


def _counted(running: Any, expected: int) -> bool:
    samples = running.worker.metrics.signals.collect()[0].samples
    return sum(s.value for s in samples if s.name.endswith("_total")) >= expected


async def test_same_signal_published_twice_leaves_one_incident_and_one_event(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        signal = encode(deploy_status("RED"))
        await produce(settings, settings.topic_deploy_status, [signal, signal])
        await eventually(lambda: _counted(worker, 2), what="both deliveries processed")
    finally:
        await worker.stop()
    rows = await db_pool.fetch("SELECT occurrence_count FROM incidents")
    assert [r["occurrence_count"] for r in rows] == [1]
    assert await db_pool.fetchval("SELECT count(*) FROM incident_events") == 1


async def test_incident_created_event_reaches_the_events_topic_with_cloudevents_headers(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(ce_source="urn:test:ingest")
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_incident_events) as events:
            await produce(settings, settings.topic_deploy_status, [encode(deploy_status("RED"))])
            [record] = await events.read_until(1)
    finally:
        await worker.stop()
    key = "deploy_status:prod:deploy-1:2026-01-01T00:00:00Z"
    body = json.loads(record.value)
    assert record.key == str(incident_id(key)).encode()
    assert body["type"] == "incident.created" and body["seq"] == 1
    assert header(record, "ce_specversion") == b"1.0"
    assert header(record, "ce_id") == str(body["id"]).encode()
    assert header(record, "ce_source") == b"urn:test:ingest"
    assert header(record, "ce_type") == b"incident.created"
    assert header(record, "ce_time") == body["occurred_at"].encode() == b"2026-01-01T00:00:00Z"
    assert header(record, "ce_subject") == key.encode()
    assert header(record, "content-type") == b"application/json"


async def test_bad_records_are_dead_lettered_byte_for_byte_and_good_ones_in_the_batch_commit(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings(max_message_bytes=2048)
    bad = {
        b"{not json": "invalid_json",
        b"\xff\xfe\x00garbage": "invalid_encoding",
        b"[1, 2, 3]": "schema_violation",
        encode(
            {"env": "prod", "status": "PURPLE", "changedAt": "2026-01-01T00:00:00Z"}
        ): "schema_violation",
        encode(deploy_status("RED", padding="x" * 4096)): "too_large",
    }
    good = [encode(deploy_status("RED", deploy_id=f"good-{i}")) for i in range(3)]
    values = [good[0], *bad, good[1], good[2]]
    original_headers = [("trace", b"\x00\x01binary"), ("trace", b"twice")]
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:
            await produce(
                settings,
                settings.topic_deploy_status,
                values,
                key=b"producer-key",
                headers=original_headers,
            )
            letters = await dlq.read_until(len(bad))
        await eventually(lambda: _counted(worker, len(values)), what="all records processed")

        async def all_committed() -> bool:
            return await _committed(settings) == len(values)

        await eventually(all_committed, what="offsets committed past every record")
    finally:
        await worker.stop()
    assert {bytes(r.value): header(r, "x-dlq-reason").decode() for r in letters} == {
        k: v for k, v in bad.items()
    }
    for record in letters:
        assert record.key == b"producer-key"
        assert list(record.headers)[:2] == original_headers
        assert header(record, "x-dlq-source-topic") == settings.topic_deploy_status.encode()
        assert header(record, "x-dlq-error")
        assert header(record, "x-dlq-failed-at")
        assert int(header(record, "x-dlq-source-offset") or b"-1") in range(len(values))
    assert len(await incidents(db_pool)) == 3


async def _committed(settings: Settings) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.topic_deploy_status) or set()
        total = 0
        for p in parts:
            total += await consumer.committed(TopicPartition(settings.topic_deploy_status, p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_unknown_topic_names_are_configurable(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    topic = f"custom.deploys.{uuid.uuid4().hex[:6]}"
    settings = make_settings(topic_deploy_status=topic)
    worker = await start_worker(settings)
    try:
        await produce(settings, topic, [encode(deploy_status("YELLOW"))])
        await eventually(lambda: _counted(worker, 1), what="signal on the custom topic")
    finally:
        await worker.stop()
    assert len(await incidents(db_pool)) == 1


async def test_a_record_with_non_utf8_headers_is_processed_and_loses_nothing_around_it(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(deploy_status("RED", deploy_id="before"))],
        )
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(deploy_status("RED", deploy_id="binary-headers")), b"{broken"],
            headers=[("trace", b"\xff\xfe not utf-8")],
        )
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(deploy_status("RED", deploy_id="after"))],
        )
        await eventually(lambda: _counted(worker, 4), what="all four records processed")
    finally:
        await worker.stop()
    keys = set(await incidents(db_pool))
    assert keys == {
        f"deploy_status:prod:{d}:2026-01-01T00:00:00Z"
        for d in ("before", "binary-headers", "after")
    }


async def test_a_record_too_large_to_republish_is_dead_lettered_without_its_value(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    from aiokafka import AIOKafkaProducer

    settings = (
        make_settings()
    )  # max_message_bytes 1 MiB: the worker's producer sends ~1 MiB at most
    huge = encode(deploy_status("RED", deploy_id="huge", padding="x" * (2 * 1024 * 1024)))
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=8 * 1024 * 1024
            )
            await producer.start()
            try:
                for value in (encode(deploy_status("RED", deploy_id="before")), huge,
                              encode(deploy_status("RED", deploy_id="after"))):  # fmt: skip
                    await producer.send_and_wait(settings.topic_deploy_status, value, key=b"k")
            finally:
                await producer.stop()
            [letter] = await dlq.read_until(1)
        await eventually(lambda: _counted(worker, 3), what="all three records handled")
    finally:
        await worker.stop()
    assert header(letter, "x-dlq-reason") == b"too_large"
    assert header(letter, "x-dlq-value-omitted") == b"true"
    assert header(letter, "x-dlq-original-size") == str(len(huge)).encode()
    assert letter.value == b"" and letter.key == b"k"
    assert set(await incidents(db_pool)) == {
        f"deploy_status:prod:{d}:2026-01-01T00:00:00Z" for d in ("before", "after")
    }
