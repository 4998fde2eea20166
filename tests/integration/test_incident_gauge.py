"""`ingest_incidents{status,severity}`: active incidents recounted every probe, every status (a
scan of the whole table) only every `ALL_COUNTS_INTERVAL_SECONDS`."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from ingest_worker.core.values import Severity
from ingest_worker.service import worker as worker_module
from ingest_worker.service.config import Settings
from ingest_worker.service.worker import Worker
from ingest_worker.store.incidents import apply_batch
from tests.factories import incident_input

pytestmark = pytest.mark.integration


def gauge(worker: Worker) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    for metric in worker.metrics.incidents.collect():
        for sample in metric.samples:
            values[(sample.labels["status"], sample.labels["severity"])] = sample.value
    return values


async def test_active_counts_follow_every_probe_and_terminal_ones_the_full_count(
    make_settings: Callable[..., Settings],
    db_pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with db_pool.acquire() as conn:
        await apply_batch(
            conn,
            [
                incident_input("k:1", signal="a", severity=Severity.RED),
                incident_input("k:2", signal="b", severity=Severity.RED),
                incident_input("k:3", signal="c", severity=Severity.YELLOW),
            ],
        )
        await conn.execute("UPDATE incidents SET status = 'RESOLVED' WHERE incident_key = 'k:3'")
    worker = Worker(make_settings())
    worker.pool = db_pool
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])

    await worker._refresh_incident_gauge()  # the first refresh counts everything
    assert gauge(worker) == {("OPEN", "RED"): 2, ("RESOLVED", "YELLOW"): 1}

    await db_pool.execute("UPDATE incidents SET status = 'ACKNOWLEDGED' WHERE incident_key = 'k:1'")
    await db_pool.execute("UPDATE incidents SET status = 'CLOSED' WHERE incident_key = 'k:3'")
    clock[0] += 2
    await worker._refresh_incident_gauge()  # active statuses only: the CLOSED one waits
    assert gauge(worker) == {
        ("OPEN", "RED"): 1,
        ("ACKNOWLEDGED", "RED"): 1,
        ("RESOLVED", "YELLOW"): 1,
    }

    clock[0] += worker_module.ALL_COUNTS_INTERVAL_SECONDS
    await worker._refresh_incident_gauge()
    assert gauge(worker) == {
        ("OPEN", "RED"): 1,
        ("ACKNOWLEDGED", "RED"): 1,
        ("CLOSED", "YELLOW"): 1,
    }
