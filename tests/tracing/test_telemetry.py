"""`service.telemetry.configure`: which `OTEL_*` variables turn tracing on, and what it installs."""

from __future__ import annotations

import ast
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from ingest_worker import tracing
from ingest_worker.service import telemetry
from tests.tracing.conftest import reset_tracer_provider

CORE = Path(__file__).resolve().parents[2] / "src" / "ingest_worker" / "core"


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(__import__("os").environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    reset_tracer_provider()
    yield
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    reset_tracer_provider()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": ""}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_which_variables_enable_tracing(env: dict[str, str], on: bool) -> None:
    assert telemetry.wanted(env) is on


def test_no_variables_no_provider(clean: None) -> None:
    assert telemetry.configure("ingest-worker") is False
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not tracing.active()


def test_console_exporter_installs_the_sdk(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    assert telemetry.configure("ingest-worker") is True
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "ingest-worker"
    assert provider.resource.attributes["deployment.environment.name"] == "test"
    assert telemetry.configure("ingest-gateway") is True  # once per process: the first one stays
    assert trace.get_tracer_provider() is provider
    with tracing.span("ingest.batch"):
        assert tracing.current_traceparent() is not None
    telemetry.flush()


def test_the_service_name_variable_wins(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "incident-worker-eu")
    assert telemetry.configure("ingest-worker") is True
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "incident-worker-eu"


def test_otlp_http_export(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the `otel` extra (part of `dev`): spans reach an OTLP/HTTP endpoint (a stand-in
    collector here)."""
    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert telemetry.configure("ingest-worker") is True
        with tracing.span("ingest.store", attributes={"ingest.incident.key": "k-1"}):
            pass
        telemetry.flush()
    finally:
        server.shutdown()
        server.server_close()
    [(path, content_type, body)] = received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert b"ingest.store" in body and b"k-1" in body


def test_the_core_does_not_import_opentelemetry() -> None:
    for module in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.startswith("opentelemetry") for n in names), module
