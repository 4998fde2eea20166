"""A few hundred clients that send half a body and hang up must not stop anyone else: as under
`ingest-worker dev`, the gateway and the worker share one process and one event loop here, and
while the storm lasts a normal request is answered, and its signal becomes an incident, within
their usual latency. Each hang-up is counted, and none is logged as an error."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.gateway import GatewayServer, GatewaySettings
from tests.gateway.test_gateway import JSON, encoded, red
from tests.support import start_worker

pytestmark = pytest.mark.integration

CLIENTS = 300


#: The storm, from a process of its own (as real clients are): CLIENTS connections at once, each
#: sending its headers and half its body, then closing.
STORM = """
import asyncio, sys

async def one(port):
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/signals/deploy_status HTTP/1.1\\r\\nHost: x\\r\\n"
        b"Content-Type: application/json\\r\\nContent-Length: 4000\\r\\n\\r\\n"
        + b'{"env":"' + b"x" * 2000
    )
    await writer.drain()
    return writer

async def main(port, count):
    writers = await asyncio.gather(*(one(port) for _ in range(count)))
    for writer in writers:
        writer.close()
    print("sent", flush=True)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def storm(port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STORM, str(port), str(CLIENTS), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.strip() == b"sent"


async def round_trip(client: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[float, float]:
    """Seconds until the gateway's 202, and until the worker stored the incident."""
    started = time.monotonic()
    response = await client.post("/v1/signals/deploy_status", content=encoded(red()), headers=JSON)
    answered = time.monotonic() - started
    assert response.status_code == 202, response.text
    key = response.json()["incidentKeys"][0]
    while not await pool.fetchval("SELECT 1 FROM incidents WHERE incident_key = $1", key):
        assert time.monotonic() - started < 30, f"{key} was not stored"
        await asyncio.sleep(0.01)
    return answered, time.monotonic() - started


async def test_clients_hanging_up_mid_body_stop_neither_the_gateway_nor_the_worker(
    make_settings: Callable[..., Settings],
    db_pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    # Rate limits out of the way: the storm is about connections, not the source's budget.
    config = GatewaySettings(
        host="127.0.0.1", port=0, rate_limit_per_second=10_000, rate_limit_burst=10_000
    )
    gateway = GatewayServer(settings, config, dev=True)
    await gateway.start()
    caplog.set_level(logging.INFO)
    try:
        assert await gateway.forwarder.wait_connected(30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client:
            await round_trip(client, db_pool)  # warm-up: topic metadata, connections
            usual = [await round_trip(client, db_pool) for _ in range(5)]
            storming = asyncio.create_task(storm(gateway.port))
            during = [await round_trip(client, db_pool) for _ in range(5)]
            await storming
            during.append(await round_trip(client, db_pool))
        # Serving the storm's few hundred connections costs the loop about a second of work on
        # a busy machine; a client that froze it (as an error log per hang-up did) costs minutes.
        answer_bound = max(3.0, 5 * max(a for a, _ in usual))
        store_bound = max(5.0, 5 * max(s for _, s in usual))
        assert max(a for a, _ in during) < answer_bound, (usual, during)
        assert max(s for _, s in during) < store_bound, (usual, during)

        def hang_ups() -> float:
            sample = gateway.metrics.registry.get_sample_value(
                "ingest_gateway_requests_total", {"source": "deploy_status", "status": "499"}
            )
            return sample or 0.0

        deadline = time.monotonic() + 30
        while hang_ups() < CLIENTS:
            assert time.monotonic() < deadline, f"{hang_ups()} of {CLIENTS} hang-ups counted"
            await asyncio.sleep(0.05)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors[:3]]
    finally:
        await gateway.stop()
        await worker.stop()
