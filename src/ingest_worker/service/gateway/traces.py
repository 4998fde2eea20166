"""The gateway's request spans: FastAPI's own OpenTelemetry instrumentation (`telemetry=`).

FastAPI opens one SERVER span per request (`{method} {route}`, the HTTP semantic conventions,
the sender's `traceparent` continued, 5xx marked as errors) once a tracer provider is installed,
and does nothing at all before. Here: which requests are not traced (probes and scrapes), no
operation spans (dependencies, endpoint, serialization), no OpenTelemetry metrics (the gateway
has Prometheus) and no OpenTelemetry logs (validation failures would carry the input values).
`annotate` adds the gateway's own attributes. The record a request produces carries the context
of its produce span (`forwarder.Forwarder.produce`): the worker's batch span continues it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from fastapi.telemetry import TelemetryConfig

from ingest_worker import tracing

#: Polled every few seconds by probes and scrapers: not worth a span each.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


TELEMETRY: TelemetryConfig = {
    "tracing": True,
    "operation_spans": False,
    "metrics": False,
    "logs": False,
    "exclude": untraced,
}


def annotate(source: str, keys: Iterable[str] | None = None, reason: str | None = None) -> None:
    """Gateway attributes on the current (request) span: `ingest.source`, the incident keys
    (`ingest.incident.key`/`.keys`), the refusal reason (`ingest.gateway.reason`)."""
    if not tracing.active():  # no span records: skip the context lookup (twice per request)
        return
    span = tracing.current_span()
    if not span.is_recording():
        return
    span.set_attribute("ingest.source", source)
    if keys is not None:
        tracing.set_incidents(span, keys=keys)
    if reason is not None:
        span.set_attribute("ingest.gateway.reason", reason)
