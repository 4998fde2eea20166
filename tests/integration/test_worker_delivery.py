"""Delivery semantics against the real broker and PostgreSQL: database outages, readiness, metrics,
rebalances and event order."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiokafka.partitioner import murmur2

from ingest_worker.service.config import Settings
from tests.conftest import ServiceEndpoints
from tests.integration.test_worker_pipeline import deploy_status
from tests.support import RunningWorker, encode, eventually, header, produce, reading, start_worker

#: Partitions of the topics `ensure_topics` creates.
EVENT_PARTITIONS = 3

pytestmark = pytest.mark.integration


def signals(prefix: str, count: int) -> list[bytes]:
    return [encode(deploy_status("RED", deploy_id=f"{prefix}-{i}")) for i in range(count)]


def processed(running: RunningWorker) -> int:
    samples = running.worker.metrics.signals.collect()[0].samples
    return int(sum(s.value for s in samples if s.name.endswith("_total")))


async def http_get(port: int, path: str) -> tuple[int, str]:
    def call() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    return await asyncio.to_thread(call)


async def test_postgres_outage_dead_letters_nothing_and_everything_lands_after_it_returns(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool, services: ServiceEndpoints
) -> None:
    if services.postgres is None:
        pytest.skip("needs the embedded PostgreSQL to stop and start it (TEST_DATABASE_URL is set)")
    settings = make_settings()
    worker = await start_worker(settings)
    port = worker.worker.http.port  # type: ignore[union-attr]
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:
            await produce(settings, settings.topic_deploy_status, signals("before", 20))
            await eventually(lambda: processed(worker) >= 20, what="first 20 signals")
            assert (await http_get(port, "/readyz"))[0] == 200

            services.postgres.stop_server()
            try:
                await produce(settings, settings.topic_deploy_status, signals("during", 30))

                async def not_ready() -> bool:
                    return (await http_get(port, "/readyz"))[0] == 503

                await eventually(not_ready, what="readiness to turn false while PostgreSQL is down")
                assert (await http_get(port, "/healthz"))[0] == 200
            finally:
                services.postgres.resume_server()

            await eventually(lambda: processed(worker) >= 50, timeout=60, what="all 50 signals")

            async def ready() -> bool:
                return (await http_get(port, "/readyz"))[0] == 200

            await eventually(ready, timeout=30, what="readiness to come back")
            dead = await dlq.drain()
    finally:
        await worker.stop()
    pool = await asyncpg.create_pool(settings.database_url.get_secret_value(), min_size=1)
    assert pool is not None
    try:
        assert await pool.fetchval("SELECT count(*) FROM incidents") == 50
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await pool.close()
    assert dead == []


async def test_metrics_endpoint_exposes_the_spec_series(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        await produce(
            settings,
            settings.topic_deploy_status,
            [
                *signals("m", 3),
                encode(deploy_status("GREEN")),
                b"{oops",
            ],
        )
        await eventually(lambda: processed(worker) >= 5, what="five records")
        await eventually(
            lambda: worker.worker.outbox is not None and worker.worker.outbox.published >= 3,
            what="events published",
        )
        status, text = await http_get(worker.worker.http.port, "/metrics")  # type: ignore[union-attr]
    finally:
        await worker.stop()
    assert status == 200
    topic = settings.topic_deploy_status
    assert f'ingest_signals_total{{outcome="created",topic="{topic}"}} 3.0' in text
    assert f'ingest_signals_total{{outcome="recovered",topic="{topic}"}} 1.0' in text
    assert f'ingest_signals_total{{outcome="dead_lettered",topic="{topic}"}} 1.0' in text
    assert f'ingest_dead_letters_total{{reason="invalid_json",topic="{topic}"}} 1.0' in text
    assert 'ingest_events_published_total{type="incident.created"} 3.0' in text
    for series in (
        "ingest_batch_duration_seconds_count",
        "ingest_consumer_lag{",
        "ingest_outbox_backlog",
        "ingest_ready",
    ):
        assert series in text, series


async def test_events_reach_the_topic_once_per_event_id_in_seq_order_per_incident(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings(batch_max_records=7)
    # Ten different signals for each of three keys: 1 created + 9 updated events per incident.
    values = [
        encode(
            deploy_status(
                "YELLOW" if n % 2 else "RED",
                deploy_id=f"k{k}",
                reasons=[{"code": "C", "severity": "error", "message": f"m{n}"}],
            )
        )
        for n in range(10)
        for k in range(3)
    ]
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_incident_events) as events:
            await produce(settings, settings.topic_deploy_status, values)
            await events.read_until(30, timeout=60)
            records = await events.drain()
    finally:
        await worker.stop()
    by_incident: dict[bytes, list[int]] = defaultdict(list)
    seen: set[bytes] = set()
    for record in records:
        ce_id = header(record, "ce_id")
        assert ce_id is not None
        if ce_id in seen:
            continue  # an at-least-once duplicate carries the same ce_id
        seen.add(ce_id)
        by_incident[record.key].append(json.loads(record.value)["seq"])
    assert sorted(len(v) for v in by_incident.values()) == [10, 10, 10]
    assert all(seqs == list(range(1, 11)) for seqs in by_incident.values())
    # Each incident's events in the partition Kafka's default partitioner gives its key (murmur2,
    # as the Java client): the outbox builds its record batches per partition itself.
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % EVENT_PARTITIONS
    db_ids = {str(r["id"]).encode() for r in await db_pool.fetch("SELECT id FROM incident_events")}
    assert seen == db_ids


async def test_a_second_worker_joining_and_leaving_the_group_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings(batch_max_records=20)
    first = await start_worker(settings)
    second: RunningWorker | None = None
    try:
        await produce(settings, settings.topic_deploy_status, signals("a", 200))
        second = await start_worker(settings)
        await produce(settings, settings.topic_deploy_status, signals("b", 200))
        # Redeliver everything once more: effects must not double.
        await produce(settings, settings.topic_deploy_status, signals("a", 200))
        await second.stop()
        second = None
        await produce(settings, settings.topic_deploy_status, signals("c", 200))

        async def all_landed() -> bool:
            count = await db_pool.fetchval("SELECT count(*) FROM incidents")
            backlog = await db_pool.fetchval("SELECT count(*) FROM outbox")
            return bool(count == 600 and backlog == 0)

        await eventually(all_landed, timeout=90, what="600 incidents and an empty outbox")
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
    counts: Any = await db_pool.fetch("SELECT occurrence_count, last_seq FROM incidents")
    assert {(r["occurrence_count"], r["last_seq"]) for r in counts} == {(1, 1)}
    assert await db_pool.fetchval("SELECT count(*) FROM incident_events") == 600
