"""OpenTelemetry tracing: spans of the batch path, W3C trace context in and out.

Only the OpenTelemetry API is imported here. Until a tracer provider is installed (the service
does it with `service.telemetry.configure` when the standard `OTEL_*` variables ask for it) every
span is the API's non-recording span and the hot paths skip building attributes, links and
headers: `active()` is one function call and an `isinstance`.

Spans (documentation: Operations, Tracing): `ingest.batch` (a consumed batch; links to the trace context of each
record that carried a `traceparent` header, or that context as parent for a batch of one record),
`ingest.store` (its transaction), `ingest.command` (one command or source transition),
`ingest.outbox.publish`, and the gateway's request and produce spans. The `traceparent` of the
span that wrote an event is stored with its outbox row and published as the event's
`traceparent` header.

Sits at the package root like `metrics.py`: delivery, store and service use it; the core never.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "INVALID_SPAN",
    "MAX_INCIDENT_ATTRIBUTES",
    "MAX_LINKS",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "active",
    "child_of",
    "current_span",
    "current_traceparent",
    "extract",
    "fail",
    "header_context",
    "inject_headers",
    "links",
    "set_incidents",
    "span",
    "stored_context",
    "traceparent_of",
    "tracer",
    "use",
]

TRACER_NAME = "ingest_worker"
#: The Kafka header (and HTTP header) of W3C Trace Context.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: At most this many incident ids/keys per span attribute (a batch touches up to 500).
MAX_INCIDENT_ATTRIBUTES = 64
#: Links per span: the SDK's limit (`OTEL_LINK_COUNT_LIMIT`, default 128); more are dropped.
MAX_LINKS = int(os.environ.get("OTEL_LINK_COUNT_LIMIT", "") or 128)

#: The API's invalid span: what every span is while tracing is off.
INVALID_SPAN = trace.INVALID_SPAN

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT_RE = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_UNSET = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_MISSING = object()
_cached: tuple[object, trace.Tracer] | None = None


def active() -> bool:
    """Whether a real tracer provider (an SDK) is installed: without one nothing is recorded.

    Reads the API's global directly: `get_tracer_provider()` looks up an environment variable
    on every call while no provider is set, which would be the whole cost of tracing when off.
    """
    provider = getattr(trace, "_TRACER_PROVIDER", _MISSING)
    if provider is _MISSING:  # the API's internals changed: the public, slower way
        provider = trace.get_tracer_provider()
    return provider is not None and not isinstance(provider, _UNSET)


def tracer() -> trace.Tracer:
    """The package's tracer from the provider installed now (tests may install and reset one)."""
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(TRACER_NAME))
    return _cached[1]


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    context: Context | None = None,
) -> Iterator[Span]:
    """A current span, or the API's invalid span (nothing attached) while tracing is off."""
    if not active():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, links=links
    ) as current:
        yield current


def current_span() -> Span:
    return trace.get_current_span()


def child_of(remote: SpanContext) -> Context:
    """A context whose parent is the remote span `remote`."""
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def use(current: Span) -> contextlib.AbstractContextManager[Any]:
    """Make `current` the current span (not ended on exit); nothing to do for an invalid span."""
    if not current.get_span_context().is_valid:
        return contextlib.nullcontext()
    return trace.use_span(current, end_on_exit=False)


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The remote context of a `traceparent` (and `tracestate`) carrier, or None."""
    if TRACEPARENT not in carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def header_context(headers: Iterable[tuple[str, bytes]]) -> SpanContext | None:
    """The remote span context of a Kafka record's `traceparent` header (and its `tracestate`),
    or None (absent or malformed: ignored). Parsed here, without the propagator's contexts: it
    runs for every record of every batch."""
    parent: bytes | None = None
    state: bytes | None = None
    for name, value in headers:
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    if parent is None:
        return None
    match = _TRACEPARENT_RE.match(bytes(parent).strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    trace_state = None
    if state:
        trace_state = TraceState.from_header([bytes(state).decode("latin-1")])
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=trace_state,
    )


def links(contexts: Iterable[SpanContext | None]) -> list[Link]:
    """One link per distinct valid context, at most `MAX_LINKS` (the SDK drops the others)."""
    seen: set[tuple[int, int]] = set()
    out: list[Link] = []
    for ctx in contexts:
        if ctx is None or (ctx.trace_id, ctx.span_id) in seen:
            continue
        seen.add((ctx.trace_id, ctx.span_id))
        out.append(Link(ctx))
        if len(out) >= MAX_LINKS:
            break
    return out


def traceparent_of(current: Span) -> str | None:
    """The W3C `traceparent` of a span, None for an invalid one."""
    ctx = current.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The `traceparent` of the current span while tracing is on, else None."""
    if not active():
        return None
    return traceparent_of(trace.get_current_span())


def inject_headers() -> list[tuple[str, bytes]]:
    """Kafka headers carrying the current trace context (none while tracing is off)."""
    if not active():
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(name, value.encode("latin-1")) for name, value in carrier.items()]


def stored_context(traceparent: str | None) -> SpanContext | None:
    """The span context of a stored `traceparent`, or None."""
    if not traceparent:
        return None
    context = extract({TRACEPARENT: traceparent})
    return trace.get_current_span(context).get_span_context() if context is not None else None


def set_incidents(
    current: Span,
    *,
    keys: Iterable[str | None] = (),
    ids: Iterable[str | None] = (),
) -> None:
    """`ingest.incident.key`/`.id` for one incident, `ingest.incident.keys`/`.ids` (distinct, the
    first `MAX_INCIDENT_ATTRIBUTES`) for several."""
    if not current.is_recording():
        return
    for name, values in (("key", keys), ("id", ids)):
        distinct = list(dict.fromkeys(v for v in values if v))
        if len(distinct) == 1:
            current.set_attribute(f"ingest.incident.{name}", distinct[0])
        elif distinct:
            current.set_attribute(f"ingest.incident.{name}s", distinct[:MAX_INCIDENT_ATTRIBUTES])


def fail(current: Span, exc: BaseException) -> None:
    """Record `exc` on `current` and mark it failed."""
    if current.is_recording():
        current.record_exception(exc)
        current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
