"""The gateway before and around the body, over raw sockets: credentials are checked from the
headers before any body byte is read; a body and a header block each have a deadline (408,
counted); idle connections cannot hold the concurrency limit; a client that hangs up is
counted at info level; a signature's timestamp must be fresh; no redirect is built from the
request's headers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceEndpoints
from tests.gateway.conftest import (
    HMAC_NEW,
    TOKEN_NEW,
    TOKEN_RUNNER,
    RunningGateway,
    gateway_config,
    unique_settings,
)
from tests.gateway.test_gateway import JSON, bearer, encoded, post, red

pytestmark = pytest.mark.integration

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
#: How long an answer given from the headers alone may take (no body byte is ever sent).
PROMPT = 0.8 * BODY_TIMEOUT


@pytest.fixture(scope="module")
def guarded(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    config = gateway_config(
        body_timeout_seconds=BODY_TIMEOUT,
        header_timeout_seconds=HEADER_TIMEOUT,
        timeout_keep_alive_seconds=1,
        max_header_bytes=8192,
        limit_concurrency=40,
    )
    running = RunningGateway(unique_settings(services), config).start()
    yield running
    running.stop()


def head(path: str, headers: dict[str, str], length: int = 5000) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def exchange(
    gw: RunningGateway, data: bytes, *, wait: float = 10.0
) -> tuple[bytes, bytes, float]:
    """Send `data` (and nothing more), return the status line, the rest and the seconds taken."""
    assert gw.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    started = time.monotonic()
    try:
        writer.write(data)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), wait)
        elapsed = time.monotonic() - started
        rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        length = [
            int(line.split(b":", 1)[1])
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ]
        rest += await asyncio.wait_for(reader.readexactly(length[0] if length else 0), wait)
    finally:
        writer.close()
    return status, rest, elapsed


def metric(gw: RunningGateway, name: str, **labels: str) -> float:
    assert gw.server is not None
    value = gw.server.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def _sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ authenticate before the body
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/signals/deploy_status", JSON, 401),
        ("/v1/signals/deploy_status", bearer("nope"), 401),
        ("/v1/signals/deploy_status", bearer(TOKEN_RUNNER), 403),
        ("/v1/signals/ecs_stopped", bearer(TOKEN_NEW), 401),  # no credentials: fail closed
        ("/v2/enqueue", bearer("nope"), 401),
        ("/v1/incidents/ingest", {**JSON, "Authorization": "Digest x"}, 401),
        # a signature of a source whose scheme it is not, or without a configured secret
        ("/v1/signals/deploy_status", {**JSON, "X-PagerDuty-Signature": "v1=00"}, 401),
    ],
)
async def test_credentials_are_checked_before_any_body_byte(
    guarded: RunningGateway, path: str, headers: dict[str, str], status: int
) -> None:
    line, _, elapsed = await exchange(guarded, head(path, headers))
    assert f" {status} ".encode() in line, line
    assert elapsed < PROMPT, f"answered after {elapsed:.2f} s: it waited for the body"


async def test_a_stale_signature_is_refused_before_the_body(guarded: RunningGateway) -> None:
    stale = str(int(time.time()) - 301)
    headers = {
        **JSON,
        "X-Grafana-Alerting-Timestamp": stale,
        "X-Grafana-Alerting-Signature": "0" * 64,
    }
    line, rest, elapsed = await exchange(guarded, head("/v1/signals/grafana", headers))
    assert b" 401 " in line and b"stale_signature" in rest
    assert elapsed < PROMPT


# ------------------------------------------------------------------ deadlines
async def test_a_body_that_stops_arriving_is_answered_408_and_counted(
    guarded: RunningGateway,
) -> None:
    before = metric(guarded, "ingest_gateway_requests_total", source="deploy_status", status="408")
    request = head("/v1/signals/deploy_status", bearer(TOKEN_NEW), length=100) + b'{"env":'
    line, rest, elapsed = await exchange(guarded, request)
    assert b" 408 " in line and b"body_timeout" in rest
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 2
    after = metric(guarded, "ingest_gateway_requests_total", source="deploy_status", status="408")
    assert after == before + 1


async def test_a_dripping_body_is_cut_at_the_deadline_not_kept_alive_by_each_byte(
    guarded: RunningGateway,
) -> None:
    assert guarded.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.server.port)
    started = time.monotonic()
    writer.write(head("/v1/signals/deploy_status", bearer(TOKEN_NEW), length=100))

    async def drip() -> None:
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(drip())
    try:
        line = await asyncio.wait_for(reader.readline(), BODY_TIMEOUT + 3)
    finally:
        dripping.cancel()
        writer.close()
    assert b" 408 " in line
    assert time.monotonic() - started < BODY_TIMEOUT + 2


@pytest.mark.parametrize(
    "partial", [b"", b"POST /v1/signals/deploy_status HTTP/1.1\r\nHost: x\r\n"]
)
async def test_headers_that_never_end_are_answered_408_and_counted(
    guarded: RunningGateway, partial: bytes
) -> None:
    before = metric(guarded, "ingest_gateway_header_timeouts_total")
    line, rest, elapsed = await exchange(guarded, partial)
    assert b" 408 " in line and b"header_timeout" in rest
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT + 2
    assert metric(guarded, "ingest_gateway_header_timeouts_total") == before + 1


async def test_idle_connections_cannot_starve_the_others(guarded: RunningGateway) -> None:
    assert guarded.server is not None
    port = guarded.server.port
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(45)]  # > the limit
    try:
        # Held connections beyond the limit: the gateway refuses at once rather than queue.
        async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 503
        # Each idle connection is answered 408 and closed at its header deadline …
        for reader, _ in idle:
            assert b" 408 " in await asyncio.wait_for(reader.readline(), HEADER_TIMEOUT + 5)
        # … and the others are served again.
        response = await post(
            guarded, "/v1/signals/deploy_status", encoded(red()), bearer(TOKEN_NEW)
        )
        assert response.status_code == 202, response.text
    finally:
        for _, writer in idle:
            writer.close()


async def test_an_idle_kept_alive_connection_is_closed(guarded: RunningGateway) -> None:
    assert guarded.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in await asyncio.wait_for(reader.readline(), 5)
        started = time.monotonic()
        while await asyncio.wait_for(reader.read(65536), 5):
            pass  # the rest of the answer, then the end of the stream
        assert time.monotonic() - started < 1 + 2
    finally:
        writer.close()


async def test_a_header_block_over_the_limit_is_refused(guarded: RunningGateway) -> None:
    # Over the limit before its end: refused at once, without waiting for the rest.
    unfinished = head("/v1/signals/deploy_status", bearer(TOKEN_NEW))[:-4] + b"\r\nX-Pad: "
    line, _, elapsed = await exchange(guarded, unfinished + b"p" * 10_000)
    assert b" 400 " in line or b" 431 " in line, line
    assert elapsed < PROMPT


async def test_a_complete_header_block_over_the_limit_is_refused_and_closed(
    guarded: RunningGateway,
) -> None:
    # Whole, in one write (the parser has every header): refused, the body never read.
    padded = {**bearer(TOKEN_NEW), **{f"X-Pad-{i}": "p" * 1000 for i in range(10)}}
    line, _, elapsed = await exchange(guarded, head("/v1/signals/deploy_status", padded, 2) + b"{}")
    assert b" 400 " in line or b" 431 " in line, line
    assert elapsed < PROMPT


async def test_a_header_block_within_the_limit_is_served(guarded: RunningGateway) -> None:
    padded = {**bearer(TOKEN_NEW), **{f"X-Pad-{i}": "p" * 1000 for i in range(6)}}
    body = encoded(red())
    line, _, _ = await exchange(
        guarded, head("/v1/signals/deploy_status", padded, len(body)) + body
    )
    assert b" 202 " in line, line


# ------------------------------------------------------------------ hanging up
async def test_a_client_hanging_up_mid_body_is_counted_at_info_level(
    guarded: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    assert guarded.server is not None
    before = metric(guarded, "ingest_gateway_requests_total", source="deploy_status", status="499")
    caplog.set_level(logging.INFO)
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", guarded.server.port)
        writer.write(head("/v1/signals/deploy_status", bearer(TOKEN_NEW), 2000) + b"{" * 1000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    deadline = time.monotonic() + 10
    while (
        metric(guarded, "ingest_gateway_requests_total", source="deploy_status", status="499")
        < before + 5
    ):
        assert time.monotonic() < deadline, "the hang-ups were not counted"
        await asyncio.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# ------------------------------------------------------------------ freshness
async def test_grafana_signatures_must_be_fresh(guarded: RunningGateway) -> None:
    body = (
        Path(__file__).parent.parent / "sources" / "grafana" / "firing_two_alerts_official.json"
    ).read_bytes()

    def signed(timestamp: str) -> dict[str, str]:
        message = timestamp.encode() + b":" + body
        return {
            **JSON,
            "X-Grafana-Alerting-Timestamp": timestamp,
            "X-Grafana-Alerting-Signature": _sign(HMAC_NEW, message),
        }

    now = int(time.time())
    cases = [
        (str(now - 60), 202),
        (str(now), 202),  # the same request again within the window: de-duplicated downstream
        (str(now), 202),
        (str((now - 30) * 1000), 202),  # milliseconds
        (str(now - 330), 401),
        (str(now + 330), 401),
        ("1000000000", 401),  # 2001
        ("soon", 401),
    ]
    for timestamp, status in cases:
        response = await post(guarded, "/v1/signals/grafana", body, signed(timestamp))
        assert response.status_code == status, (timestamp, response.text)
        if status == 401:
            assert response.json()["reason"] == "stale_signature"


# ------------------------------------------------------------------ redirects
async def test_no_redirect_is_built_from_the_request_headers(guarded: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as client:
        for method, path in (
            ("POST", "/v1/signals/deploy_status/"),
            ("GET", "/healthz/"),
            ("GET", "/docs/"),
            ("GET", "/nowhere"),
        ):
            response = await client.request(
                method,
                path,
                headers={**bearer(TOKEN_NEW), "Host": "evil.example"},
                content=encoded(red()) if method == "POST" else None,
            )
            assert response.status_code == 404, (path, response.status_code)
            assert "location" not in response.headers
            assert response.json()["reason"] == "not_found"
