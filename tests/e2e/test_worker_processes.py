"""`INGEST_WORKER_PROCESSES=2`: one `ingest-worker run`, two worker processes in one consumer
group, against the real broker and PostgreSQL: both consume, every signal is applied and
published exactly once, SIGTERM stops both within the grace period, and a child that dies
stops the other and the parent exits non-zero."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psutil
import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port
from ingest_worker.service.kafka_clients import ensure_topics
from tests.e2e.process import WorkerProcess
from tests.integration.test_worker_pipeline import deploy_status
from tests.support import encode, eventually, header, produce, reading

pytestmark = pytest.mark.e2e


def _two_free_ports() -> int:
    """A port p with p + 1 free too (child i listens on INGEST_HTTP_PORT + i)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def _signals_counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ingest_signals_total{")
    )


def _children(worker: WorkerProcess) -> list[psutil.Process]:
    assert worker.proc is not None
    return psutil.Process(worker.proc.pid).children()


async def _ready(worker: WorkerProcess, port: int) -> None:
    child = WorkerProcess(worker.settings, worker.log_path, http_port=port)
    child.proc = worker.proc  # the parent: fail fast if it exits
    await child.wait_ready()


async def test_two_worker_processes_share_the_partitions_and_apply_everything_once(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    grace = 10.0
    settings = make_settings(
        worker_processes=2, batch_max_records=100, shutdown_grace_seconds=grace
    )
    await ensure_topics(settings)
    total = 1500
    values = [encode(deploy_status("RED", deploy_id=f"p-{i}")) for i in range(total)]
    await produce(settings, settings.topic_deploy_status, values)
    port = _two_free_ports()
    parent = WorkerProcess(settings, tmp_path / "worker.log", http_port=port).start()
    try:
        await _ready(parent, port)
        await _ready(parent, port + 1)
        assert len(_children(parent)) == 2

        async def done() -> bool:
            n = await db_pool.fetchval("SELECT count(*) FROM incidents")
            backlog = await db_pool.fetchval("SELECT count(*) FROM outbox")
            return bool(n == total and backlog == 0)

        await eventually(done, timeout=120, what=f"{total} incidents from two processes")
        per_process = [_signals_counted(port), _signals_counted(port + 1)]
        async with reading(settings, settings.topic_incident_events) as events:
            await events.read_until(total, timeout=60)
            records = await events.drain()
        children = _children(parent)
        parent.signal(signal.SIGTERM)
        started = time.monotonic()
        code = await parent.wait_exit(grace + 5)
        elapsed = time.monotonic() - started
    finally:
        parent.kill()
    assert code == 0, parent.tail()
    assert elapsed <= grace, f"took {elapsed:.1f}s, grace is {grace}s"
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert all(n > 0 for n in per_process), f"signals per process: {per_process}"
    assert sum(per_process) == total
    ids = [header(r, "ce_id") for r in records]
    db_ids = {str(r["id"]).encode() for r in await db_pool.fetch("SELECT id FROM incident_events")}
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == db_ids


async def test_a_worker_process_that_dies_stops_the_other_and_the_parent_fails(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(worker_processes=2, shutdown_grace_seconds=5.0)
    await ensure_topics(settings)
    port = _two_free_ports()
    parent = WorkerProcess(settings, tmp_path / "worker.log", http_port=port).start()
    try:
        await _ready(parent, port)
        await _ready(parent, port + 1)
        first, second = _children(parent)
        first.kill()
        code = await parent.wait_exit(20)
    finally:
        parent.kill()
    assert code != 0, parent.tail()
    second.wait(5)  # already gone: stopped by the parent, not left running
    assert not second.is_running()
