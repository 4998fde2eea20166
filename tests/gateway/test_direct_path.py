"""The ingest POSTs' direct path (`app.GatewayApp`): every ingest route is on it, and it answers
exactly as FastAPI's path does — accepted, refused before the body, refused on the body, and the
routes it does not take — over real HTTP with the real broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ingest_worker import tracing
from ingest_worker.service.gateway.app import GatewayApp
from ingest_worker.service.gateway.dev import alertmanager_notification
from ingest_worker.sources.registry import SOURCES
from tests.conftest import ServiceEndpoints
from tests.gateway.conftest import (
    MAX_BODY,
    TOKEN_NEW,
    TOKEN_PAGERDUTY,
    RunningGateway,
    gateway_config,
    unique_settings,
)

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
AUTH = {**JSON, "Authorization": f"Bearer {TOKEN_NEW}"}


@pytest.fixture(scope="module")
def running(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    gateway = RunningGateway(unique_settings(services), gateway_config()).start()
    yield gateway
    gateway.stop()


def app_of(gateway: RunningGateway) -> GatewayApp:
    assert gateway.server is not None
    app = gateway.server.app
    assert isinstance(app, GatewayApp)
    return app


def notification() -> bytes:
    body = alertmanager_notification(resolved=False)
    body["alerts"][0]["labels"] = {**body["alerts"][0]["labels"], "instance": uuid.uuid4().hex}
    body["alerts"][0]["fingerprint"] = uuid.uuid4().hex[:16]
    return json.dumps(body).encode()


#: (method, path, headers, body) → the same answer on both paths (the same bytes to each).
CASES: list[tuple[str, str, dict[str, str], Any]] = [
    ("POST", "/v1/signals/alertmanager", AUTH, notification),
    ("POST", "/v1/signals/alertmanager", JSON, notification),  # no credential: 401
    ("POST", "/v1/signals/alertmanager", {"Authorization": f"Bearer {TOKEN_NEW}"}, notification),
    ("POST", "/v1/signals/alertmanager", AUTH, lambda: b"{not json"),
    ("POST", "/v1/signals/alertmanager", AUTH, lambda: b"[" * 10 + b"]" * 10),
    ("POST", "/v1/signals/alertmanager", AUTH, lambda: b"x" * (MAX_BODY + 1)),
    ("POST", "/v2/enqueue", JSON, lambda: json.dumps({"routing_key": "nope"}).encode()),
    ("POST", "/v2/enqueue", {**JSON, "Authorization": f"Bearer {TOKEN_PAGERDUTY}"}, lambda: b"{}"),
    ("POST", "/v1/signals/no-such-source", AUTH, notification),
    ("GET", "/v1/signals/alertmanager", AUTH, lambda: b""),
    ("POST", "/v1/signals/alertmanager/", AUTH, notification),
]


def comparable(response: httpx.Response) -> tuple[int, Any, str | None]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and "offset" in body:
        body = {**body, "offset": "any"}  # every accepted record has its own
    return response.status_code, body, response.headers.get("content-type")


def test_every_ingest_route_is_on_the_direct_path(running: RunningGateway) -> None:
    app = app_of(running)
    expected = {f"/v1/signals/{s.name}" for s in SOURCES} | {"/v1/incidents/ingest", "/v2/enqueue"}
    assert set(app.direct) == expected


async def test_the_direct_path_answers_as_fastapi_does(running: RunningGateway) -> None:
    assert not tracing.active(), "with a tracer installed, every request takes FastAPI's path"
    app = app_of(running)
    direct = dict(app.direct)
    answers: dict[str, list[tuple[int, Any, str | None]]] = {}
    bodies = [body() for _, _, _, body in CASES]
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        for name, table in (("direct", direct), ("fastapi", {})):
            app.direct = table
            try:
                answers[name] = [
                    comparable(await client.request(method, path, headers=headers, content=body))
                    for (method, path, headers, _), body in zip(CASES, bodies, strict=True)
                ]
            finally:
                app.direct = direct
    assert answers["direct"] == answers["fastapi"]
    statuses = [status for status, _, _ in answers["direct"]]
    assert statuses[0] == 202 and statuses[1] == 401 and statuses[2] == 415
    assert statuses[5] == 413 and statuses[-3:] == [404, 405, 404]
