"""Installs the OpenTelemetry SDK when, and only when, the standard `OTEL_*` variables ask for it.

Tracing is on when `OTEL_TRACES_EXPORTER` names an exporter other than `none`, or (exporter
unset) when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set;
`OTEL_SDK_DISABLED=true` wins over both. Otherwise the SDK is not even imported: the API's
no-op tracer stays in place. The SDK itself reads the other standard variables (sampler,
batch processor, limits, OTLP endpoint, headers, timeout). Needs the `otel` extra
(`pip install 'ingest-worker[otel]'`: the SDK and the OTLP/HTTP exporter).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import import_module, metadata
from typing import Any

import structlog
from opentelemetry import trace

from ingest_worker.tracing import active

log = structlog.get_logger("ingest_worker.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard variables enable tracing."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return any(n.strip().lower() not in ("", "none") for n in exporter.split(","))
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[Any] = []
    for name in names:
        if name in ("", "none"):
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            # The exporters come with the `otel` extra (http) or by hand (grpc).
            transport = "grpc" if protocol == "grpc" else "http"
            module = import_module(f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter")
            exporters.append(module.OTLPSpanExporter())
        else:
            log.warning("tracing_exporter_unknown", exporter=name, known="otlp, console, none")
    return exporters


def _version() -> str:
    try:
        return metadata.version("ingest-worker")
    except metadata.PackageNotFoundError:
        return "0"


def configure(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK tracer provider if the `OTEL_*` variables enable tracing; True when
    tracing is on (also when a provider was installed before, e.g. by `opentelemetry-instrument`
    or a test). Once per process: the first caller's `service_name` is the default
    `service.name` (`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` override it)."""
    env = os.environ if env is None else env
    trace.get_tracer_provider()  # loads one named by OTEL_PYTHON_TRACER_PROVIDER, if any
    if active():
        return True
    if not wanted(env):
        return False
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters = _exporters(env)
    except ImportError as exc:
        log.warning(
            "tracing_unavailable",
            error=str(exc),
            hint="OTEL_* variables ask for traces: install the otel extra "
            "(pip install 'ingest-worker[otel]')",
        )
        return False
    resource = Resource.create({"service.name": service_name, "service.version": _version()})
    provider = TracerProvider(resource=resource.merge(OTELResourceDetector().detect()))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info(
        "tracing_enabled",
        service=provider.resource.attributes.get("service.name"),
        exporters=[type(e).__name__ for e in exporters],
    )
    return True


def flush() -> None:
    """Export the spans still buffered (the SDK also flushes at exit)."""
    provider: Any = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(5000)
