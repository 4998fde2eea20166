"""Hostile HTTP at the gateway, as users run it: `ingest-worker gateway` and `ingest-worker run`,
each in its own process. Every hostile kind runs between good signals posted through the
gateway; each good signal must become exactly one incident (nothing lost, nothing duplicated),
every hostile request must get its answer (or its connection its end) on time, and the
gateway's log must hold no error and no credential. The kinds count in the session tally."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port
from ingest_worker.service.kafka_clients import ensure_topics
from tests.e2e.process import WorkerProcess, worker_environment
from tests.e2e.tally import TALLY

pytestmark = pytest.mark.e2e

TOKEN = "tok-e2e-gateway-6b1f0c"
HMAC_SECRET = "whsec-e2e-9d2a"
DEADLINE = 1.0
JSON = {"Content-Type": "application/json"}
GRAFANA = Path(__file__).parent.parent / "sources" / "grafana" / "firing_two_alerts_official.json"


@dataclass
class GatewayProcess:
    settings: Settings
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        env = worker_environment(self.settings, free_port())
        env.update(
            INGEST_GATEWAY_HOST="127.0.0.1",
            INGEST_GATEWAY_PORT=str(self.port),
            INGEST_GATEWAY_TOKENS=json.dumps({"deploy_status": [TOKEN], "pagerduty": [TOKEN]}),
            INGEST_GATEWAY_HMAC_SECRETS=json.dumps({"grafana": [HMAC_SECRET]}),
            INGEST_GATEWAY_BODY_TIMEOUT_SECONDS=str(DEADLINE),
            INGEST_GATEWAY_HEADER_TIMEOUT_SECONDS=str(DEADLINE),
            INGEST_GATEWAY_RATE_LIMIT_PER_SECOND="10000",
            INGEST_GATEWAY_RATE_LIMIT_BURST="10000",
        )
        log = self.log_path.open("ab")
        exe = Path(sys.executable).with_name("ingest-worker")
        self.proc = subprocess.Popen(
            [str(exe), "gateway"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.ready):
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready"
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


async def raw(port: int, data: bytes, *, hang_up: bool = False) -> bytes:
    """Send `data`; the status line of the answer (b"" when hanging up instead)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if hang_up:
            return b""
        return await asyncio.wait_for(reader.readline(), DEADLINE + 5)
    finally:
        writer.close()


def head(path: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in {**JSON, **headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def grafana_signed(timestamp: int) -> tuple[bytes, dict[str, str]]:
    body = GRAFANA.read_bytes()
    signature = hmac.new(HMAC_SECRET.encode(), f"{timestamp}:".encode() + body, hashlib.sha256)
    return body, {
        "X-Grafana-Alerting-Timestamp": str(timestamp),
        "X-Grafana-Alerting-Signature": signature.hexdigest(),
    }


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


Kind = Callable[[int, httpx.AsyncClient], Awaitable[int]]


async def half_bodies_hung_up(port: int, _: httpx.AsyncClient) -> int:
    request = head("/v1/signals/deploy_status", bearer(), 4000) + b"{" * 2000
    await asyncio.gather(*(raw(port, request, hang_up=True) for _ in range(200)))
    return 200


async def body_never_finished(port: int, _: httpx.AsyncClient) -> int:
    line = await raw(port, head("/v1/signals/deploy_status", bearer(), 100) + b'{"env"')
    assert b" 408 " in line, line
    return 1


async def headers_never_finished(port: int, _: httpx.AsyncClient) -> int:
    line = await raw(port, b"POST /v1/signals/deploy_status HTTP/1.1\r\nHost: x\r\n")
    assert b" 408 " in line, line
    return 1


async def declared_body_without_credentials(port: int, _: httpx.AsyncClient) -> int:
    started = time.monotonic()
    line = await raw(port, head("/v1/signals/deploy_status", {}, 1_000_000))
    assert b" 401 " in line and time.monotonic() - started < DEADLINE, line
    return 1


async def stale_signature(_: int, client: httpx.AsyncClient) -> int:
    body, headers = grafana_signed(int(time.time()) - 3600)
    response = await client.post("/v1/signals/grafana", content=body, headers={**JSON, **headers})
    assert response.status_code == 401 and response.json()["reason"] == "stale_signature"
    return 1


async def wrong_routing_key(_: int, client: httpx.AsyncClient) -> int:
    event = {"routing_key": "not-a-key", "event_action": "resolve", "dedup_key": "x"}
    response = await client.post("/v2/enqueue", json=event)
    assert response.status_code == 401
    unreadable = await client.post("/v2/enqueue", content=b"{oops", headers=JSON)
    assert unreadable.status_code == 401
    return 2


async def host_reflecting_redirect(_: int, client: httpx.AsyncClient) -> int:
    response = await client.post(
        "/v1/signals/deploy_status/", headers={**bearer(), "Host": "evil.example"}, json={}
    )
    assert response.status_code == 404 and "location" not in response.headers
    return 1


async def oversized_header_block(port: int, _: httpx.AsyncClient) -> int:
    line = await raw(
        port, head("/v1/signals/deploy_status", bearer(), 10)[:-4] + b"\r\nX: " + b"p" * 20_000
    )
    assert b" 400 " in line or b" 431 " in line, line
    return 1


KINDS: dict[str, Kind] = {
    "gateway_half_body_hang_up": half_bodies_hung_up,
    "gateway_body_never_finished": body_never_finished,
    "gateway_headers_never_finished": headers_never_finished,
    "gateway_declared_body_without_credentials": declared_body_without_credentials,
    "gateway_stale_signature": stale_signature,
    "gateway_wrong_routing_key": wrong_routing_key,
    "gateway_host_reflecting_redirect": host_reflecting_redirect,
    "gateway_oversized_header_block": oversized_header_block,
}


def red() -> dict[str, Any]:
    return {
        "env": "prod",
        "status": "RED",
        "changedAt": "2026-11-23T09:00:00Z",
        "deployId": f"deploy-{uuid.uuid4().hex[:12]}",
        "signals": {"health": {"status": "fail", "httpStatus": 500}},
        "reasons": [{"code": "HEALTH_FAIL", "severity": "error", "message": "down"}],
    }


@pytest.fixture
def processes(
    scenario_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[Settings, GatewayProcess, WorkerProcess]]:
    settings = scenario_settings()
    gateway = GatewayProcess(settings, tmp_path / "gateway.log", free_port())
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    yield settings, gateway, worker
    gateway.stop()
    worker.kill()


async def test_hostile_http_loses_and_duplicates_nothing(
    processes: tuple[Settings, GatewayProcess, WorkerProcess], db_pool: asyncpg.Pool
) -> None:
    settings, gateway, worker = processes
    await ensure_topics(settings)
    worker.start()
    gateway.start()
    await asyncio.gather(worker.wait_ready(), gateway.wait_ready())
    keys: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30) as client:

        async def good() -> None:
            response = await client.post("/v1/signals/deploy_status", json=red(), headers=bearer())
            assert response.status_code == 202, response.text
            keys.extend(response.json()["incidentKeys"])

        await good()
        for name, kind in KINDS.items():
            TALLY.hostile(name, await kind(gateway.port, client))
            await good()
        # A signed request replayed inside the freshness window: accepted twice, stored once.
        body, headers = grafana_signed(int(time.time()))
        for _ in range(2):
            replay = await client.post(
                "/v1/signals/grafana", content=body, headers={**JSON, **headers}
            )
            assert replay.status_code == 202, replay.text
        keys.extend(replay.json()["incidentKeys"])
        TALLY.hostile("gateway_signature_replayed_in_window")
        await good()
    TALLY.sent(len(keys))

    deadline = time.monotonic() + 60
    rows: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        found = await db_pool.fetch(
            "SELECT incident_key, occurrence_count FROM incidents WHERE incident_key = ANY($1)",
            keys,
        )
        rows = {}
        for row in found:
            rows.setdefault(row["incident_key"], []).append(row["occurrence_count"])
        if set(rows) == set(keys):
            break
        await asyncio.sleep(0.1)
    lost = [k for k in keys if k not in rows]
    duplicated = [k for k, counts in rows.items() if counts != [1]]
    TALLY.scenarios += 1
    TALLY.incidents_expected += len(keys)
    TALLY.incidents_found += len(rows)
    TALLY.lost += len(lost)
    TALLY.duplicated += len(duplicated)
    assert not lost and not duplicated, (lost, duplicated)

    log = gateway.log_path.read_text(errors="replace")
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]
    for secret in (TOKEN, HMAC_SECRET):
        assert secret not in log
