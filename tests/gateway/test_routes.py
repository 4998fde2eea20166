"""`INGEST_GATEWAY_ROUTES` picks the route groups an application exposes, and optional groups are
included from their modules when present. Route wiring only: an ASGI app in process, whose
producer is never reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import ValidationError

from ingest_worker.service.config import Settings
from ingest_worker.service.gateway import app as gateway_app
from ingest_worker.service.gateway.forwarder import Acknowledged
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.sources.registry import SOURCES


class Unreachable:
    broker_ok = True

    async def produce(
        self, topic: str, key: bytes | None, value: bytes, *, tenant: str
    ) -> Acknowledged:
        raise AssertionError("no record is produced by these tests")


@asynccontextmanager
async def serving(routes: str, *, dev: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    app = gateway_app.create_app(
        Settings(), GatewaySettings(routes=routes), Unreachable(), sources=SOURCES, dev=dev
    )
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_only_the_chosen_groups_are_exposed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_app, "OPTIONAL_ROUTERS", (("read", "tests.gateway.extra_routes"),))
    async with serving("read") as client:
        assert (await client.get("/healthz")).status_code == 200
        response = await client.get("/v1/whoami", headers={"X-Tenant": "acme"})
        assert response.json() == {"tenant": "acme", "actor": "dev"}
        assert (await client.post("/v1/signals/deploy_status", json={})).status_code == 404
        assert (await client.post("/v2/enqueue", json={})).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/v1/whoami" in paths and not any(p.startswith("/v1/signals") for p in paths)
    async with serving("ingest") as client:
        assert (await client.get("/v1/whoami")).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/v2/enqueue" in paths and "/v1/signals/deploy_status" in paths


async def test_an_absent_optional_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        gateway_app, "OPTIONAL_ROUTERS", (("read", "tests.gateway.no_such_module"),)
    )
    async with serving("ingest,read,console") as client:
        assert (await client.get("/healthz")).status_code == 200


def test_unknown_groups_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown route groups"):
        GatewaySettings(routes="ingest,admin")
    assert GatewaySettings().route_groups == {"ingest", "read", "console"}
    assert GatewaySettings(routes=" ingest , read ").route_groups == {"ingest", "read"}
