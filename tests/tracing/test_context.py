"""W3C trace context on Kafka records: parsing `traceparent` headers and linking batches."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ingest_worker import tracing

VALID = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_traceparent_header_is_a_remote_context() -> None:
    ctx = tracing.header_context([("content-type", b"application/json"), ("traceparent", VALID)])
    assert ctx is not None and ctx.is_remote and ctx.is_valid
    assert ctx.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert ctx.span_id == 0xB7AD6B7169203331
    assert ctx.trace_flags == TraceFlags.SAMPLED


def test_the_tracestate_comes_along() -> None:
    ctx = tracing.header_context([("traceparent", VALID), ("tracestate", b"vendor=abc,other=1")])
    assert ctx is not None and ctx.trace_state.get("vendor") == "abc"


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has 4 fields
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",  # short span id
        b"\xff\xfe",
    ],
)
def test_a_malformed_traceparent_is_ignored(value: bytes) -> None:
    assert tracing.header_context([("traceparent", value)]) is None


def test_a_later_version_with_more_fields_is_read() -> None:
    value = b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"
    assert tracing.header_context([("traceparent", value)]) is not None


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_the_same_answer_as_the_api_propagator(value: bytes) -> None:
    from opentelemetry import trace

    context = TraceContextTextMapPropagator().extract({"traceparent": value.decode()})
    expected = trace.get_current_span(context).get_span_context()
    ours = tracing.header_context([("traceparent", value)])
    if not expected.is_valid:
        assert ours is None
    else:
        assert ours is not None
        assert (ours.trace_id, ours.span_id, ours.trace_flags) == (
            expected.trace_id,
            expected.span_id,
            expected.trace_flags,
        )


def test_links_are_distinct_and_bounded() -> None:
    contexts: list[SpanContext | None] = [
        SpanContext(n + 1, 7, is_remote=True) for n in range(tracing.MAX_LINKS + 10)
    ]
    contexts += [None, contexts[0]]
    links = tracing.links(contexts)
    assert len(links) == tracing.MAX_LINKS
    assert len({link.context.trace_id for link in links}) == tracing.MAX_LINKS


def test_a_stored_traceparent_round_trips() -> None:
    ctx = tracing.stored_context(VALID.decode())
    assert ctx is not None and ctx.span_id == 0xB7AD6B7169203331
    assert tracing.stored_context(None) is None
    assert tracing.stored_context("nonsense") is None
