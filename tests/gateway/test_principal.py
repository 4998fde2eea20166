"""`require(scope)`: the principal of a request from its headers, with problem+json refusals, and
the credentials file's principals (re-read when it changes). Pure request logic: an ASGI app in
process, no broker."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from ingest_worker.service.gateway import principal, problems
from ingest_worker.service.gateway.credentials import CredentialStore
from ingest_worker.service.gateway.principal import Principal, PrincipalResolver, require
from ingest_worker.service.gateway.settings import GatewaySettings
from tests.gateway.conftest import secrets

READER = "tok-reader-acme-81f2"
COMMANDER = "tok-commander-acme-0c4e"
INGESTER = "tok-ingest-globex-77aa"
LEGACY = "tok-legacy-deploy-19b0"


def principals_file(path: Path, entries: list[dict[str, Any]], **extra: Any) -> Path:
    path.write_text(json.dumps({"principals": entries, **extra}), encoding="utf-8")
    return path


ENTRIES = [
    {"token": READER, "tenant": "acme", "actor": "ana", "roles": ["viewer"], "scopes": ["read"]},
    {
        "token": COMMANDER,
        "tenant": "acme",
        "actor": "bo",
        "roles": ["responder", "lead"],
        "scopes": ["read", "command"],
    },
    {"token": INGESTER, "tenant": "globex", "actor": "ci", "scopes": ["ingest"]},
]


def app_for(config: GatewaySettings, *, dev: bool) -> tuple[FastAPI, CredentialStore]:
    app = FastAPI()
    problems.install(app)
    store = CredentialStore(config, recheck_seconds=0)
    principal.attach(app, PrincipalResolver(store, dev=dev))

    @app.get("/read")
    async def read(who: Principal = Depends(require("read"))) -> dict[str, Any]:  # noqa: B008
        return {
            "tenant": who.tenant,
            "actor": who.actor,
            "roles": sorted(who.roles),
            "scopes": sorted(who.scopes),
        }

    @app.post("/command")
    async def command(who: Principal = Depends(require("command"))) -> dict[str, Any]:  # noqa: B008
        return {"actor": who.actor}

    return app, store


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = GatewaySettings(
        secrets_file=principals_file(tmp_path / "credentials.json", ENTRIES),
        tokens=secrets({"deploy_status": [LEGACY]}),
    )
    app, _ = app_for(config, dev=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["reason"] == reason
    assert body["type"] == f"urn:ingest-worker:problem:{reason}"
    assert body["title"] and body["detail"]
    for token in (READER, COMMANDER, INGESTER, LEGACY):
        assert token not in response.text


async def test_a_token_resolves_to_its_tenant_actor_roles_and_scopes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/read", headers=auth(COMMANDER))
    assert response.json() == {
        "tenant": "acme",
        "actor": "bo",
        "roles": ["lead", "responder"],
        "scopes": ["command", "read"],
    }
    assert (await client.post("/command", headers=auth(COMMANDER))).json() == {"actor": "bo"}


async def test_missing_or_wrong_credentials_are_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, auth("nope"), {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer"}):
        response = await client.get("/read", headers=headers)
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_right_token_without_the_scope_is_403(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/command", headers=auth(READER)), 403, "forbidden_scope")
    assert_problem(await client.get("/read", headers=auth(INGESTER)), 403, "forbidden_scope")
    # A per-source token is bound to the tenant `default` with the scope `ingest` only.
    assert_problem(await client.get("/read", headers=auth(LEGACY)), 403, "forbidden_scope")


async def test_dev_mode_is_open_with_the_tenant_from_x_tenant() -> None:
    app, _ = app_for(GatewaySettings(), dev=True)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/command")
        assert response.json() == {"actor": "dev"}
        headers = {"X-Tenant": "acme-2", "X-Actor": "ana", "X-Roles": "viewer, lead,,"}
        answer = (await client.get("/read", headers=headers)).json()
        assert answer == {
            "tenant": "acme-2",
            "actor": "ana",
            "roles": ["lead", "viewer"],
            "scopes": ["command", "ingest", "read"],
        }
        assert (await client.get("/read")).json()["tenant"] == "default"
        assert (await client.get("/read", headers={"X-Tenant": ""})).json()["tenant"] == "default"
        for bad in ("Acme", "-acme", "a" * 64, "acme_corp", "acme/../x"):
            response = await client.get("/read", headers={"X-Tenant": bad})
            assert_problem(response, 400, "invalid_tenant")
        # A presented credential is still checked under dev.
        assert_problem(await client.get("/read", headers=auth("nope")), 401, "unauthenticated")


async def test_the_credentials_file_is_re_read_and_a_bad_one_keeps_the_last(
    tmp_path: Path,
) -> None:
    path = principals_file(tmp_path / "credentials.json", ENTRIES[:1])
    _, store = app_for(GatewaySettings(secrets_file=path), dev=False)
    resolver = PrincipalResolver(store, dev=False)
    assert resolver.authorize({"authorization": f"Bearer {READER}"}, "read").tenant == "acme"
    principals_file(path, [{**ENTRIES[0], "tenant": "initech"}])
    os.utime(path, (1, 2_000_000_000))
    assert resolver.authorize({"authorization": f"Bearer {READER}"}, "read").tenant == "initech"
    principals_file(path, [{**ENTRIES[0], "tenant": "Not A Tenant"}])
    os.utime(path, (1, 2_000_000_100))
    assert resolver.authorize({"authorization": f"Bearer {READER}"}, "read").tenant == "initech"
    assert store.reload_error is not None and "tenant" in store.reload_error
    assert READER not in store.reload_error
    principals_file(path, [ENTRIES[0], {**ENTRIES[1], "token": READER}])
    os.utime(path, (1, 2_000_000_200))
    assert store.principals_of(READER.encode())[0].tenant == "initech"
    assert store.reload_error is not None and "bound twice" in store.reload_error


def test_require_knows_only_the_three_scopes() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        require("admin")
