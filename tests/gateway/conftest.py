"""The gateway under test: `GatewayServer` in a thread of its own (its own event loop), on a free
port, producing to the session's real broker (tests/conftest.py `services`).

Its own loop lets both async tests (httpx from the session loop) and schemathesis (synchronous
requests) talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from ingest_worker.service.config import Settings, topic_field
from ingest_worker.service.gateway import GatewayServer, GatewaySettings
from ingest_worker.service.gateway.settings import RateLimit
from ingest_worker.sources.registry import SOURCES
from ingest_worker.sources.signatures import SignatureScheme
from tests.conftest import ServiceEndpoints

TOKEN_OLD = "tok-deploy-old-7f3a9c"
TOKEN_NEW = "tok-deploy-new-2b81d0"
TOKEN_RUNNER = "tok-runner-55e1aa"
TOKEN_PAGERDUTY = "routingkey0123456789abcdef012345"
TOKEN_EXTERNAL = "tok-external-90c2"
BASIC_VERIFICATION = "grafana:s3cret-pass"
HMAC_OLD = "hmac-secret-old"
HMAC_NEW = "hmac-secret-new"
MAX_BODY = 64 * 1024


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def unique_settings(services: ServiceEndpoints, **overrides: Any) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {topic_field(s): f"{s.topic}.{suffix}" for s in SOURCES}
    values.update(
        kafka_bootstrap_servers=services.bootstrap_servers,
        topic_dead_letter=f"signals.dlq.{suffix}",
        topic_incident_events=f"incident.events.{suffix}",
        log_format="console",
        shutdown_grace_seconds=5.0,
    )
    values.update(overrides)
    return Settings(**values)


def secrets(table: Mapping[str, list[str]]) -> dict[str, list[SecretStr]]:
    return {k: [SecretStr(v) for v in vs] for k, vs in table.items()}


@dataclass
class RunningGateway:
    settings: Settings
    config: GatewaySettings
    dev: bool = False
    schemes: Mapping[str, SignatureScheme] | None = None
    server: GatewayServer | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def start(self) -> RunningGateway:
        ready = threading.Event()

        async def main() -> None:
            try:
                self._stop = asyncio.Event()
                self.server = GatewayServer(
                    self.settings, self.config, dev=self.dev, schemes=self.schemes
                )
                await self.server.start()
                connected = await self.server.forwarder.wait_connected(30)
                assert connected, "the gateway did not connect to the broker"
            except BaseException as exc:
                self._error = exc
                ready.set()
                raise
            ready.set()
            await self._stop.wait()
            await self.server.stop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                with contextlib.suppress(BaseException):  # reported through self._error
                    self._loop.run_until_complete(main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="gateway", daemon=True)
        self._thread.start()
        assert ready.wait(60), "the gateway did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def gateway_config(**overrides: Any) -> GatewaySettings:
    """The protected gateway of most tests (INGEST_GATEWAY_* variables do not leak in)."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_body_bytes": MAX_BODY,
        "tokens": secrets(
            {
                "deploy_status": [TOKEN_OLD, TOKEN_NEW],
                "runner": [TOKEN_RUNNER],
                "pagerduty": [TOKEN_PAGERDUTY],
                "external": [TOKEN_EXTERNAL],
                "alertmanager": [TOKEN_NEW],
            }
        ),
        "basic_auth": secrets(
            {"verification": [BASIC_VERIFICATION], "grafana": [BASIC_VERIFICATION]}
        ),
        "hmac_secrets": secrets(
            {"pagerduty": [HMAC_OLD, HMAC_NEW], "grafana": [HMAC_OLD, HMAC_NEW]}
        ),
        "rate_limits": {"runner": RateLimit(rate=0.2, burst=3)},
        "produce_timeout_seconds": 1.0,
        "retry_after_seconds": 2,
        "ensure_topics": True,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture(scope="module")
def gateway(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    running = RunningGateway(unique_settings(services), gateway_config()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dev_gateway(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    config = gateway_config(tokens={}, basic_auth={}, hmac_secrets={})
    running = RunningGateway(unique_settings(services), config, dev=True).start()
    yield running
    running.stop()
