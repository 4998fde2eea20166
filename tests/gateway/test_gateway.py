"""The gateway over real HTTP with the real broker: every endpoint and status, auth and HMACs,
limits, and that a 202 means the record is on the topic (consumed back), while no refused
request leaves a record there."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from ingest_worker.sources.registry import BY_NAME
from tests.gateway.conftest import (
    BASIC_VERIFICATION,
    HMAC_NEW,
    HMAC_OLD,
    MAX_BODY,
    TOKEN_NEW,
    TOKEN_OLD,
    TOKEN_PAGERDUTY,
    TOKEN_RUNNER,
    RunningGateway,
    basic,
)
from tests.support import TopicReader, eventually, reading

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


def red(deploy_id: str | None = None) -> dict[str, Any]:
    return {
        "env": "prod",
        "status": "RED",
        "changedAt": "2026-11-23T09:00:00Z",
        "deployId": deploy_id or f"deploy-{uuid.uuid4().hex[:12]}",
        "signals": {"health": {"status": "fail", "httpStatus": 500}},
        "reasons": [{"code": "HEALTH_FAIL", "severity": "error", "message": "Health check failed"}],
    }


def bearer(token: str) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {token}"}


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


async def post(
    gw: RunningGateway, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        return await client.post(path, content=body, headers=headers)


async def on_topic(gw: RunningGateway, topic: str, accepted: list[httpx.Response]) -> TopicReader:
    """Every 202 of `accepted` is at its partition/offset of `topic`, byte for byte."""
    async with reading(gw.settings, topic) as reader:
        records = await reader.drain(quiet_for=0.3)
    where = {(r.partition, r.offset): r for r in records}
    for response in accepted:
        answer = response.json()
        record = where.get((answer["partition"], answer["offset"]))
        assert record is not None, f"202 without its record: {answer}"
        assert record.value == response.request.content
    return reader


# ------------------------------------------------------------------ operations
async def test_healthz_readyz_and_metrics(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["broker"] is True
        await client.post(
            "/v1/signals/deploy_status", content=encoded(red()), headers=bearer(TOKEN_NEW)
        )
        text = (await client.get("/metrics")).text
    assert 'ingest_gateway_requests_total{source="deploy_status",status="202"}' in text
    assert "# TYPE ingest_gateway_produce_seconds histogram" in text
    assert 'ingest_gateway_request_bytes_total{source="deploy_status"}' in text


async def test_openapi_lists_every_registered_source(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        document = (await client.get("/openapi.json")).json()
    paths = set(document["paths"])
    assert {f"/v1/signals/{name}" for name in BY_NAME} <= paths
    assert {"/v2/enqueue", "/v1/incidents/ingest", "/healthz", "/readyz", "/metrics"} <= paths


# ------------------------------------------------------------------ 202 and the record
async def test_202_only_with_the_record_on_the_topic_keyed_by_the_incident(
    gateway: RunningGateway,
) -> None:
    topic = gateway.settings.topic_of("deploy_status")
    accepted = []
    for token in (TOKEN_OLD, TOKEN_NEW):  # a rotation: both tokens valid
        signal = red()
        response = await post(gateway, "/v1/signals/deploy_status", encoded(signal), bearer(token))
        assert response.status_code == 202, response.text
        answer = response.json()
        key = f"deploy_status:prod:{signal['deployId']}:2026-11-23T09:00:00Z"
        assert answer["topic"] == topic and answer["incidentKeys"] == [key]
        accepted.append(response)
    # The retry of a signal lands on the same partition (its key is the incident's).
    again = await post(
        gateway, "/v1/signals/deploy_status", accepted[0].request.content, bearer(TOKEN_NEW)
    )
    assert again.json()["partition"] == accepted[0].json()["partition"]
    accepted.append(again)
    reader = await on_topic(gateway, topic, accepted)
    keys = {r.key for r in reader.records}
    assert {a.json()["incidentKeys"][0].encode() for a in accepted} <= keys


async def test_refused_requests_leave_nothing_on_the_topic(gateway: RunningGateway) -> None:
    topic = gateway.settings.topic_of("verification")
    marker = f"run-{uuid.uuid4().hex}"
    signal = {
        "runId": marker,
        "playbookId": "post-deploy-verify",
        "playbookVersion": "1.0.0",
        "env": "prod",
        "status": "failed",
        "completedAt": "2026-11-23T09:10:00Z",
    }
    auth = {**JSON, "Authorization": basic(BASIC_VERIFICATION)}
    refused = [
        (encoded(signal), JSON, 401),
        (encoded(signal), {**JSON, "Authorization": basic("grafana:wrong")}, 401),
        (encoded({**signal, "status": "exploded"}), auth, 400),
        (encoded(signal), {**auth, "Content-Type": "text/plain"}, 415),
        (encoded(signal), bearer(TOKEN_RUNNER), 403),
    ]
    for body, headers, status in refused:
        response = await post(gateway, "/v1/signals/verification", body, headers)
        assert response.status_code == status, response.text
        assert response.json()["reason"] and response.json()["message"]
    ok = await post(gateway, "/v1/signals/verification", encoded(signal), auth)
    assert ok.status_code == 202, ok.text
    reader = await on_topic(gateway, topic, [ok])
    assert [r.value for r in reader.records if marker.encode() in r.value] == [ok.request.content]


# ------------------------------------------------------------------ 400
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"a":1,"a":2}', "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (b"", "empty_value"),
        (b"[1,2]", "schema_violation"),
        (json.dumps({**red(), "status": "PURPLE"}).encode(), "schema_violation"),
        (json.dumps({**red(), "deployId": "ghp_" + "a" * 36}).encode(), "schema_violation"),
    ],
)
async def test_400_with_the_dead_letter_reason(
    gateway: RunningGateway, body: bytes, reason: str
) -> None:
    response = await post(gateway, "/v1/signals/deploy_status", body, bearer(TOKEN_NEW))
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == reason
    assert "ghp_" not in response.json()["message"]


# ------------------------------------------------------------------ 401 / 403
async def test_auth_failures(gateway: RunningGateway) -> None:
    body = encoded(red())
    cases = [
        (JSON, 401, "credentials required"),
        (bearer("nope"), 401, "invalid credentials"),
        ({**JSON, "Authorization": "Bearer"}, 401, "invalid credentials"),
        ({**JSON, "Authorization": "Digest abc"}, 401, "invalid credentials"),
        ({**JSON, "Authorization": "Basic !!notbase64"}, 401, "invalid credentials"),
        (bearer(TOKEN_RUNNER), 403, "not valid for source deploy_status"),
    ]
    for headers, status, text in cases:
        response = await post(gateway, "/v1/signals/deploy_status", body, headers)
        assert response.status_code == status
        assert text in response.json()["message"]
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_source_without_credentials_is_refused(gateway: RunningGateway) -> None:
    stopped = {
        "cluster": "c",
        "taskArn": "arn:aws:ecs:eu-west-1:1:task/c/1",
        "stoppedAt": "2026-11-23T09:00:00Z",
    }
    response = await post(gateway, "/v1/signals/ecs_stopped", encoded(stopped), bearer(TOKEN_NEW))
    assert response.status_code == 401
    assert "fail closed" in response.json()["message"]


def _sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _fixture(source: str, case: str) -> bytes:
    from pathlib import Path

    return (Path(__file__).parent.parent / "sources" / source / f"{case}.json").read_bytes()


@pytest.mark.skipif("pagerduty" not in BY_NAME, reason="the pagerduty source is not registered")
async def test_pagerduty_signatures(gateway: RunningGateway) -> None:
    body = _fixture("pagerduty", "webhook_incident_triggered")
    path = "/v1/signals/pagerduty"
    old, new = _sign(HMAC_OLD, body), _sign(HMAC_NEW, body)
    cases = [
        (f"v1={new}", 202),
        (f"v1={'0' * 64},v1={old}", 202),  # several signatures while PagerDuty rotates
        (f"v1={_sign('other', body)}", 401),
        ("v0=abc", 401),
        (f"v1={_sign(HMAC_NEW, body + b' ')}", 401),
    ]
    accepted = []
    for signature, status in cases:
        response = await post(gateway, path, body, {**JSON, "X-PagerDuty-Signature": signature})
        assert response.status_code == status, response.text
        if status == 202:
            accepted.append(response)
    assert (await post(gateway, path, body, JSON)).status_code == 401
    await on_topic(gateway, gateway.settings.topic_of("pagerduty"), accepted)


@pytest.mark.skipif("grafana" not in BY_NAME, reason="the grafana source is not registered")
async def test_grafana_signatures_and_basic_auth(gateway: RunningGateway) -> None:
    body = _fixture("grafana", "firing_two_alerts_official")
    path = "/v1/signals/grafana"
    signed = {**JSON, "X-Grafana-Alerting-Signature": _sign(HMAC_NEW, body)}
    assert (await post(gateway, path, body, signed)).status_code == 202
    now = str(int(time.time()))
    timed = {
        **JSON,
        "X-Grafana-Alerting-Timestamp": now,
        "X-Grafana-Alerting-Signature": _sign(HMAC_OLD, now.encode() + b":" + body),
    }
    assert (await post(gateway, path, body, timed)).status_code == 202
    replayed = {**timed, "X-Grafana-Alerting-Timestamp": str(int(now) + 1)}
    assert (await post(gateway, path, body, replayed)).status_code == 401
    wrong = {**JSON, "X-Grafana-Alerting-Signature": _sign("other", body)}
    assert (await post(gateway, path, body, wrong)).status_code == 401
    basic_auth = {**JSON, "Authorization": basic(BASIC_VERIFICATION)}
    assert (await post(gateway, path, body, basic_auth)).status_code == 202


# ------------------------------------------------------------------ 413 / 415
async def test_413_on_a_declared_length_over_the_limit(gateway: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)  # type: ignore[union-attr]
    writer.write(
        b"POST /v1/signals/deploy_status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN_NEW.encode() + b"\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    await writer.drain()
    # No body byte sent: the answer comes from the header alone.
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert b" 413 " in status_line
    writer.close()


async def test_413_while_reading_without_waiting_for_the_rest(gateway: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)  # type: ignore[union-attr]
    writer.write(
        b"POST /v1/signals/deploy_status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN_NEW.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 8192
    for _ in range(MAX_BODY // len(chunk) + 2):  # just over the limit, and never the last chunk
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert b" 413 " in status_line
    writer.close()


async def test_a_body_at_the_limit_is_read(gateway: RunningGateway) -> None:
    signal = red()
    signal["padding"] = ""
    room = MAX_BODY - len(encoded(signal))
    signal["padding"] = "p" * (room - 1)
    body = encoded(signal)
    assert len(body) < MAX_BODY
    response = await post(gateway, "/v1/signals/deploy_status", body, bearer(TOKEN_NEW))
    assert response.status_code in (202, 400), response.text  # read whole; the model decides
    over = await post(gateway, "/v1/signals/deploy_status", body + b" " * 2, bearer(TOKEN_NEW))
    assert over.status_code == 413 and over.json()["reason"] == "too_large"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"]
)
async def test_415_unless_json(gateway: RunningGateway, content_type: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN_NEW}", "Content-Type": content_type}
    response = await post(gateway, "/v1/signals/deploy_status", encoded(red()), headers)
    assert response.status_code == 415
    assert response.json()["reason"] == "unsupported_media_type"


async def test_json_with_charset_and_vendor_types_are_json(gateway: RunningGateway) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.alert+json"):
        headers = {"Authorization": f"Bearer {TOKEN_NEW}", "Content-Type": content_type}
        response = await post(gateway, "/v1/signals/deploy_status", encoded(red()), headers)
        assert response.status_code == 202, response.text


# ------------------------------------------------------------------ 429
async def test_429_over_the_rate_limit_with_retry_after(gateway: RunningGateway) -> None:
    failure = {
        "runId": "run-1",
        "stepName": "build",
        "conclusion": "failure",
        "completedAt": "2026-11-23T09:00:00Z",
    }
    statuses = []
    for _ in range(5):  # burst 3, refilled at 0.2/s
        response = await post(gateway, "/v1/signals/runner", encoded(failure), bearer(TOKEN_RUNNER))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["reason"] == "rate_limited"
    assert statuses[:3] == [202, 202, 202] and statuses[3:] == [429, 429]


# ------------------------------------------------------------------ 404 / 405
async def test_unknown_source_and_method(gateway: RunningGateway) -> None:
    response = await post(gateway, "/v1/signals/nagios", b"{}", bearer(TOKEN_NEW))
    assert response.status_code == 404 and response.json()["reason"] == "not_found"
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.get("/v1/signals/deploy_status")
    assert response.status_code == 405 and response.json()["reason"] == "method_not_allowed"


# ------------------------------------------------------------------ 503
async def test_503_while_the_broker_is_paused_then_202(
    gateway: RunningGateway, services: Any
) -> None:
    if services.kafka is None:
        pytest.skip("needs the embedded broker to pause it")
    topic = gateway.settings.topic_of("deploy_status")
    services.kafka.pause()
    try:
        paused = await post(gateway, "/v1/signals/deploy_status", encoded(red()), bearer(TOKEN_NEW))
        assert paused.status_code == 503, paused.text
        assert paused.json()["reason"] == "broker_unavailable"
        assert paused.headers["Retry-After"] == "2"

        async def not_ready() -> bool:
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                return (await client.get("/readyz")).status_code == 503

        await eventually(not_ready, timeout=15, what="/readyz 503 with the broker paused")
    finally:
        services.kafka.resume()
    accepted = []
    for _ in range(3):
        response = await post(
            gateway, "/v1/signals/deploy_status", encoded(red()), bearer(TOKEN_NEW)
        )
        assert response.status_code == 202, response.text
        accepted.append(response)
    await on_topic(gateway, topic, accepted)


# ------------------------------------------------------------------ PagerDuty Events API v2
needs_pagerduty = pytest.mark.skipif(
    "pagerduty" not in BY_NAME, reason="the pagerduty source is not registered"
)


def _trigger(**extra: Any) -> dict[str, Any]:
    return {
        "routing_key": TOKEN_PAGERDUTY,
        "event_action": "trigger",
        "payload": {
            "summary": "Example alert on host1.example.com",
            "timestamp": "2026-11-23T08:42:58.315+0000",
            "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
            "severity": "critical",
        },
        **extra,
    }


@needs_pagerduty
async def test_enqueue_trigger_acknowledge_resolve(gateway: RunningGateway) -> None:
    dedup = f"disk-{uuid.uuid4().hex[:8]}"
    responses = []
    for event in (
        _trigger(dedup_key=dedup),
        {"routing_key": TOKEN_PAGERDUTY, "dedup_key": dedup, "event_action": "acknowledge"},
        {"routing_key": TOKEN_PAGERDUTY, "dedup_key": dedup, "event_action": "resolve"},
    ):
        response = await post(gateway, "/v2/enqueue", encoded(event), JSON)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "status": "success",
            "message": "Event processed",
            "dedup_key": dedup,
        }
        responses.append(response)
    async with reading(gateway.settings, gateway.settings.topic_of("pagerduty")) as reader:
        records = await reader.drain(quiet_for=0.3)
    mine = [json.loads(r.value) for r in records if dedup.encode() in r.value]
    assert [m["event_action"] for m in mine] == ["trigger", "acknowledge", "resolve"]
    assert "received_at" not in mine[0]  # it has its own timestamp: a retry is the same signal
    assert all(m["received_at"].endswith("Z") for m in mine[1:])
    assert {r.key for r in records if dedup.encode() in r.value} == {
        f"pagerduty-events:{dedup}".encode()
    }


@needs_pagerduty
@pytest.mark.parametrize(
    "case",
    [
        "events_DERIVED_resolve_payload_without_summary",
        "events_DERIVED_acknowledge_payload_empty_summary_other_severity",
    ],
)
async def test_enqueue_accepts_a_payload_on_acknowledge_and_resolve(
    gateway: RunningGateway, case: str
) -> None:
    """PagerDuty requires a payload (summary, source, severity) only for a trigger; senders such as
    Alertmanager's receiver send theirs on every action."""
    event = json.loads(_fixture("pagerduty", case))
    dedup = f"am-{uuid.uuid4().hex[:8]}"
    event.update(routing_key=TOKEN_PAGERDUTY, dedup_key=dedup)
    del event["received_at"]  # the gateway adds it
    response = await post(gateway, "/v2/enqueue", encoded(event), JSON)
    assert response.status_code == 202, response.text
    async with reading(gateway.settings, gateway.settings.topic_of("pagerduty")) as reader:
        records = await reader.drain(quiet_for=0.3)
    [mine] = [json.loads(r.value) for r in records if dedup.encode() in r.value]
    assert mine["event_action"] == event["event_action"]
    assert mine["payload"] == event["payload"]


@needs_pagerduty
async def test_enqueue_trigger_without_dedup_key_gets_one(gateway: RunningGateway) -> None:
    response = await post(gateway, "/v2/enqueue", encoded(_trigger()), JSON)
    assert response.status_code == 202, response.text
    dedup = response.json()["dedup_key"]
    assert str(uuid.UUID(dedup)) == dedup
    async with reading(gateway.settings, gateway.settings.topic_of("pagerduty")) as reader:
        records = await reader.drain(quiet_for=0.3)
    assert [json.loads(r.value)["dedup_key"] for r in records if dedup.encode() in r.value] == [
        dedup
    ]


async def test_enqueue_refusals_speak_pagerduty(gateway: RunningGateway) -> None:
    cases = [
        ({"routing_key": TOKEN_PAGERDUTY, "event_action": "resolve"}, 400, "invalid event"),
        (
            {"routing_key": TOKEN_PAGERDUTY, "event_action": "explode", "dedup_key": "x"},
            400,
            "invalid event",
        ),
        (
            _trigger(payload={"summary": "s", "source": "h", "severity": "fatal"}),
            400,
            "invalid event",
        ),
        (_trigger(payload={"source": "h", "severity": "info"}), 400, "invalid event"),
        ({**_trigger(), "routing_key": "wrong-key"}, 401, "unauthorized"),
        ({k: v for k, v in _trigger().items() if k != "routing_key"}, 401, "unauthorized"),
    ]
    for event, status, word in cases:
        response = await post(gateway, "/v2/enqueue", encoded(event), JSON)
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["status"] == word and answer["message"] and answer["errors"]
        assert TOKEN_PAGERDUTY not in response.text
    # Without a credential in its headers, a body without a readable routing key is refused
    # as unauthenticated, saying nothing of its validity; with one, it is an invalid event.
    response = await post(gateway, "/v2/enqueue", b"{oops", JSON)
    assert response.status_code == 401 and response.json()["status"] == "unauthorized"
    response = await post(gateway, "/v2/enqueue", b"{oops", bearer(TOKEN_PAGERDUTY))
    assert response.status_code == 400 and response.json()["status"] == "invalid event"


# ------------------------------------------------------------------ /v1/incidents/ingest
async def test_generic_ingest(gateway: RunningGateway) -> None:
    from tests.gateway.conftest import TOKEN_EXTERNAL

    request = {
        "sourceType": "CUSTOM",
        "sourceRef": f"incident-{uuid.uuid4().hex[:8]}",
        "title": "Service outage in payment-service",
        "severity": "high",
        "timeline": {"start": "2024-01-15T10:00:00Z"},
        "metadata": {"service": "payment-service", "environment": "production"},
    }
    response = await post(gateway, "/v1/incidents/ingest", encoded(request), bearer(TOKEN_EXTERNAL))
    if "external" not in BY_NAME:
        assert response.status_code == 404 and response.json()["reason"] == "not_found"
        return
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["incidentKey"] == f"external:custom:{request['sourceRef']}"
    await on_topic(gateway, gateway.settings.topic_of("external"), [response])
    bad = await post(
        gateway, "/v1/incidents/ingest", encoded({"title": "x"}), bearer(TOKEN_EXTERNAL)
    )
    assert bad.status_code == 400 and bad.json()["reason"] == "schema_violation"


# ------------------------------------------------------------------ dev mode
async def test_dev_mode_accepts_unauthenticated_requests(dev_gateway: RunningGateway) -> None:
    response = await post(dev_gateway, "/v1/signals/deploy_status", encoded(red()), JSON)
    assert response.status_code == 202, response.text


@pytest.mark.skipif(
    "alertmanager" not in BY_NAME, reason="the alertmanager source is not registered"
)
async def test_the_dev_curl_example_opens_then_resolves(dev_gateway: RunningGateway) -> None:
    from ingest_worker.service.gateway.dev import alertmanager_notification, curl_example

    assert "/v1/signals/alertmanager" in curl_example(8081)
    accepted = []
    for resolved in (False, True):
        body = encoded(alertmanager_notification(resolved=resolved))
        response = await post(dev_gateway, "/v1/signals/alertmanager", body, JSON)
        assert response.status_code == 202, response.text
        assert response.json()["incidentKeys"] == ["alertmanager:1a30ba71cca2921f"]
        accepted.append(response)
    await on_topic(dev_gateway, dev_gateway.settings.topic_of("alertmanager"), accepted)
