"""The gateway's request spans, over real HTTP with the real broker, and the trace they start
carried through the record to the worker's batch and the incident event."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ingest_worker.service.config import Settings
from tests.gateway.conftest import TOKEN_NEW, RunningGateway, gateway_config
from tests.support import eventually, header, reading, start_worker
from tests.tracing.conftest import named, parse_traceparent, traceparent

pytestmark = pytest.mark.integration

RED = {
    "env": "prod", "status": "RED", "changedAt": "2026-11-23T09:00:00Z", "deployId": "deploy-gw",
    "signals": {}, "reasons": [],
}  # fmt: skip
KEY = "deploy_status:prod:deploy-gw:2026-11-23T09:00:00Z"


async def test_a_request_trace_reaches_the_incident_event(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    trace_id, caller = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    gateway = RunningGateway(settings, gateway_config()).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {TOKEN_NEW}", "Content-Type": "application/json"}
            accepted = await client.post(
                "/v1/signals/deploy_status",
                content=json.dumps(RED).encode(),
                headers={**headers, "traceparent": traceparent(trace_id, caller).decode()},
            )
            assert accepted.status_code == 202, accepted.text
            refused = await client.post(
                "/v1/signals/deploy_status",
                content=b"{}",
                headers={**headers, "Content-Type": "text/plain"},
            )
            assert refused.status_code == 415
            assert (await client.get("/healthz")).status_code == 200
    finally:
        gateway.stop()

    requests = named(spans, "POST /v1/signals/deploy_status")
    [request] = [s for s in requests if s.context.trace_id == trace_id]
    assert request.kind is SpanKind.SERVER
    assert request.parent is not None and request.parent.span_id == caller
    assert request.attributes is not None
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["http.route"] == "/v1/signals/deploy_status"
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["ingest.source"] == "deploy_status"
    assert request.attributes["ingest.incident.key"] == KEY
    [other] = [s for s in requests if s is not request]  # the refusal: its reason, a new trace
    assert other.attributes is not None
    assert other.attributes["http.response.status_code"] == 415
    assert other.attributes["ingest.gateway.reason"] == "unsupported_media_type"
    assert other.status.status_code is not StatusCode.ERROR  # a 4xx is the sender's error
    assert not named(spans, "GET /healthz")  # probes are not traced
    [send] = named(spans, f"send {settings.topic_deploy_status}")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.context.span_id

    # The record carries the produce span's context; the worker continues it.
    async with reading(settings, settings.topic_deploy_status) as signals:
        [record] = await signals.read_until(1)
    assert parse_traceparent(header(record, "traceparent")) == (trace_id, send.context.span_id)
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_incident_events) as events:
            [event] = await events.read_until(1)
        await eventually(lambda: bool(named(spans, "ingest.batch")), what="the batch span")
    finally:
        await worker.stop()
    [batch] = named(spans, "ingest.batch")
    assert batch.parent is not None and batch.parent.span_id == send.context.span_id
    event_trace, _ = parse_traceparent(header(event, "traceparent"))
    assert event_trace == trace_id  # HTTP request → record → batch → incident event: one trace
