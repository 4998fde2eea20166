"""The worker as a separate process: SIGTERM mid-batch exits 0 within the grace period, and a
restart leaves nothing committed-but-unpublished and nothing lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.kafka_clients import ensure_topics
from tests.e2e.process import WorkerProcess
from tests.integration.test_worker_pipeline import deploy_status
from tests.support import encode, eventually, header, produce, reading

pytestmark = pytest.mark.e2e


async def test_sigterm_during_a_large_batch_exits_zero_in_grace_and_a_restart_completes_the_work(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    grace = 10.0
    settings = make_settings(batch_max_records=2000, shutdown_grace_seconds=grace)
    await ensure_topics(settings)
    total = 6000
    values = [encode(deploy_status("RED", deploy_id=f"t-{i}")) for i in range(total)]
    await produce(settings, settings.topic_deploy_status, values)

    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        await first.wait_ready()

        async def some_committed() -> bool:
            return bool(await db_pool.fetchval("SELECT count(*) FROM incidents") > 0)

        await eventually(some_committed, what="the first batch to commit")
        first.signal(signal.SIGTERM)
        started = time.monotonic()
        code = await first.wait_exit(grace + 5)
        elapsed = time.monotonic() - started
    finally:
        first.kill()
    assert code == 0, first.tail()
    assert elapsed <= grace, f"took {elapsed:.1f}s, grace is {grace}s"
    assert await db_pool.fetchval("SELECT count(*) FROM outbox") == 0, (
        "committed events were left unpublished at shutdown"
    )

    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        await second.wait_ready()

        async def done() -> bool:
            n = await db_pool.fetchval("SELECT count(*) FROM incidents")
            backlog = await db_pool.fetchval("SELECT count(*) FROM outbox")
            return bool(n == total and backlog == 0)

        await eventually(done, timeout=120, what=f"{total} incidents after the restart")
        async with reading(settings, settings.topic_incident_events) as events:
            records = await events.read_until(total, timeout=60)
            records = await events.drain()
    finally:
        second.signal(signal.SIGTERM)
        await second.wait_exit(grace + 5)
        second.kill()
    ids = {header(r, "ce_id") for r in records}
    db_ids = {str(r["id"]).encode() for r in await db_pool.fetch("SELECT id FROM incident_events")}
    assert ids == db_ids
    assert len(db_ids) == total
