"""Tenants at the gateway, over real HTTP with the real broker: every record carries the `tenant`
header of the credential that sent it (never of the payload); a PagerDuty routing key is bound
to a tenant and never reaches the topic; under dev, `X-Tenant` names it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from ingest_worker.service.gateway.settings import PrincipalEntry
from tests.conftest import ServiceEndpoints
from tests.gateway.conftest import (
    TOKEN_NEW,
    TOKEN_PAGERDUTY,
    RunningGateway,
    gateway_config,
    unique_settings,
)
from tests.gateway.test_gateway import JSON, bearer, encoded, post, red
from tests.support import reading

pytestmark = pytest.mark.integration

ACME_INGEST = "tok-acme-ingest-5d0c"
ACME_ROUTING_KEY = "acmeroutingkey00112233445566778"
GLOBEX_READER = "tok-globex-read-aa01"


@pytest.fixture(scope="module")
def tenanted(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    config = gateway_config(
        principals=[
            PrincipalEntry(
                token=SecretStr(ACME_INGEST),
                tenant="acme",
                actor="acme-ci",
                scopes=["ingest"],
                sources=["deploy_status"],
            ),
            PrincipalEntry(
                token=SecretStr(ACME_ROUTING_KEY),
                tenant="acme",
                actor="acme-pagerduty",
                scopes=["ingest"],
                sources=["pagerduty"],
            ),
            PrincipalEntry(
                token=SecretStr(GLOBEX_READER), tenant="globex", actor="viewer", scopes=["read"]
            ),
        ]
    )
    running = RunningGateway(unique_settings(services), config).start()
    yield running
    running.stop()


def tenant_of(record: Any) -> str | None:
    headers = dict(record.headers or ())
    value = headers.get("tenant")
    return None if value is None else bytes(value).decode()


async def records_with(gw: RunningGateway, source: str, marker: str) -> list[Any]:
    async with reading(gw.settings, gw.settings.topic_of(source)) as reader:
        records = await reader.drain(quiet_for=0.3)
    return [r for r in records if marker.encode() in r.value]


async def test_each_record_carries_the_tenant_of_its_credential(tenanted: RunningGateway) -> None:
    mine, legacy, other = red(), red(), red()
    path = "/v1/signals/deploy_status"
    assert (await post(tenanted, path, encoded(mine), bearer(ACME_INGEST))).status_code == 202
    assert (await post(tenanted, path, encoded(legacy), bearer(TOKEN_NEW))).status_code == 202
    # A body naming a tenant changes nothing: the tenant is the credential's.
    spoofed = {**other, "tenant": "globex"}
    assert (await post(tenanted, path, encoded(spoofed), bearer(ACME_INGEST))).status_code == 202
    for signal, tenant in ((mine, "acme"), (legacy, "default"), (other, "acme")):
        records = await records_with(tenanted, "deploy_status", signal["deployId"])
        assert [tenant_of(r) for r in records] == [tenant]


async def test_a_principal_ingests_only_its_sources_and_scopes(tenanted: RunningGateway) -> None:
    body = encoded({"runId": "r", "stepName": "s", "conclusion": "failure"})
    response = await post(tenanted, "/v1/signals/runner", body, bearer(ACME_INGEST))
    assert response.status_code == 403 and response.json()["reason"] == "forbidden"
    response = await post(
        tenanted, "/v1/signals/deploy_status", encoded(red()), bearer(GLOBEX_READER)
    )
    assert response.status_code == 403 and response.json()["reason"] == "forbidden"


@pytest.mark.parametrize(
    ("key", "tenant"), [(ACME_ROUTING_KEY, "acme"), (TOKEN_PAGERDUTY, "default")]
)
async def test_a_routing_key_names_the_tenant_and_never_reaches_the_topic(
    tenanted: RunningGateway, key: str, tenant: str
) -> None:
    dedup = f"rk-{uuid.uuid4().hex[:10]}"
    event = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {"summary": "disk full", "source": "host-1", "severity": "error"},
    }
    response = await post(tenanted, "/v2/enqueue", encoded(event), JSON)
    assert response.status_code == 202, response.text
    records = await records_with(tenanted, "pagerduty", dedup)
    assert [tenant_of(r) for r in records] == [tenant]
    assert key.encode() not in records[0].value
    assert "routing_key" not in json.loads(records[0].value)


async def test_a_routing_key_of_another_source_is_403(tenanted: RunningGateway) -> None:
    event = {"routing_key": ACME_INGEST, "event_action": "resolve", "dedup_key": "x"}
    response = await post(tenanted, "/v2/enqueue", encoded(event), JSON)
    assert response.status_code == 403 and ACME_INGEST not in response.text


async def test_dev_mode_takes_the_tenant_from_x_tenant(dev_gateway: RunningGateway) -> None:
    signal = red()
    headers = {**JSON, "X-Tenant": "initech"}
    path = "/v1/signals/deploy_status"
    assert (await post(dev_gateway, path, encoded(signal), headers)).status_code == 202
    records = await records_with(dev_gateway, "deploy_status", signal["deployId"])
    assert [tenant_of(r) for r in records] == ["initech"]
    bad = await post(dev_gateway, path, encoded(red()), {**JSON, "X-Tenant": "Init/Tech"})
    assert bad.status_code == 400 and bad.json()["reason"] == "invalid_tenant"
