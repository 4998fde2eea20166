"""Traces of the worker, in process on the real broker and PostgreSQL: a signal's `traceparent`
is continued by its batch and carried on the incident events it caused; commands get spans with
their outcome."""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ingest_worker.service.cli_lifecycle import command_message
from ingest_worker.service.config import Settings
from ingest_worker.service.kafka_clients import ensure_topics
from tests.support import (
    encode,
    eventually,
    header,
    produce,
    publish_and_wait,
    reading,
    start_worker,
)
from tests.tracing.conftest import named, parse_traceparent, traceparent

pytestmark = pytest.mark.integration


def red(deploy: str) -> dict[str, object]:
    return {
        "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
        "signals": {}, "reasons": [], "deployId": deploy,
    }  # fmt: skip


def key_of(deploy: str) -> str:
    return f"deploy_status:prod:{deploy}:2024-01-01T00:00:00Z"


def ids() -> tuple[int, int]:
    return random.getrandbits(128) | 1, random.getrandbits(64) | 1


async def test_a_signal_trace_reaches_its_incident_event(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    trace_id, parent_id = ids()
    worker = await start_worker(settings)
    try:
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(red("deploy-1"))],
            headers=[("traceparent", traceparent(trace_id, parent_id))],
        )
        async with reading(settings, settings.topic_incident_events) as events:
            [event] = await events.read_until(1)
        await eventually(lambda: bool(named(spans, "ingest.outbox.publish")), what="publish span")
    finally:
        await worker.stop()

    [batch] = named(spans, "ingest.batch")
    assert batch.kind is SpanKind.CONSUMER
    assert batch.context.trace_id == trace_id  # a batch of one record continues its trace
    assert batch.parent is not None and batch.parent.span_id == parent_id
    assert batch.attributes is not None
    assert batch.attributes["ingest.batch.records"] == 1
    assert batch.attributes["ingest.batch.topics"] == (settings.topic_deploy_status,)
    assert batch.attributes["ingest.batch.outcome"] == "committed"
    assert batch.attributes["ingest.batch.created"] == 1

    [store] = named(spans, "ingest.store")
    assert store.parent is not None and store.parent.span_id == batch.context.span_id
    assert store.attributes is not None
    assert store.attributes["ingest.incident.key"] == key_of("deploy-1")
    incident_id = event.key.decode() if event.key else None
    assert store.attributes["ingest.incident.id"] == incident_id
    assert store.attributes["ingest.store.events"] == 1

    # The event carries the traceparent of the span that wrote it: the store transaction.
    assert parse_traceparent(header(event, "traceparent")) == (trace_id, store.context.span_id)
    [publish] = named(spans, "ingest.outbox.publish")
    assert publish.kind is SpanKind.PRODUCER
    assert [(link.context.trace_id, link.context.span_id) for link in publish.links] == [
        (trace_id, store.context.span_id)
    ]
    assert publish.attributes is not None
    assert publish.attributes["ingest.incident.id"] == incident_id


async def test_a_batch_links_every_record_trace(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    traces = {f"deploy-{n}": ids() for n in range(3)}
    for deploy, (trace_id, span_id) in traces.items():
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(red(deploy))],
            headers=[("traceparent", traceparent(trace_id, span_id))],
        )
    await produce(settings, settings.topic_deploy_status, [encode(red("untraced"))])
    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_incident_events) as events:
            records = await events.read_until(4)
        await eventually(lambda: bool(named(spans, "ingest.outbox.publish")), what="publish span")
    finally:
        await worker.stop()

    batches = named(spans, "ingest.batch")
    assert sum((b.attributes or {})["ingest.batch.records"] for b in batches) == 4

    def continued_by(trace_id: int, span_id: int) -> int:
        """The trace of the batch that continued (parent) or linked this record's context."""
        for batch in batches:
            contexts = [(link.context.trace_id, link.context.span_id) for link in batch.links]
            parent = batch.parent
            if (trace_id, span_id) in contexts or (
                parent is not None and (parent.trace_id, parent.span_id) == (trace_id, span_id)
            ):
                return batch.context.trace_id
        raise AssertionError(f"no batch span continues trace {trace_id:032x}")

    stores = {s.context.span_id: s for s in named(spans, "ingest.store")}
    for deploy, (trace_id, span_id) in traces.items():
        batch_trace = continued_by(trace_id, span_id)
        [event] = [r for r in records if header(r, "ce_subject") == key_of(deploy).encode()]
        # Found from the signal's trace: the event carries the traceparent of the store span
        # of the batch that continued (or links) the signal's context.
        event_trace, writer = parse_traceparent(header(event, "traceparent"))
        assert event_trace == batch_trace
        assert key_of(deploy) in keys_of(stores[writer])
    linked = [link for batch in batches for link in batch.links]
    assert all(link.context.is_remote for link in linked)


def keys_of(span: ReadableSpan) -> tuple[str, ...]:
    attributes = span.attributes or {}
    if "ingest.incident.key" in attributes:
        return (str(attributes["ingest.incident.key"]),)
    return tuple(attributes.get("ingest.incident.keys", ()))  # type: ignore[arg-type]


def args(incident: str, **extra: object) -> argparse.Namespace:
    values = {"incident": incident, "actor": "alice", "actor_type": "human",
              "role": ["ONCALL_ENGINEER"], "rationale": None, "note": None, "severity": None,
              "expected_seq": None, "command_id": None}  # fmt: skip
    values.update(extra)
    return argparse.Namespace(**values)


async def test_commands_get_spans_with_their_outcome(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    key = key_of("deploy-1")
    worker = await start_worker(settings)
    try:
        await produce(settings, settings.topic_deploy_status, [encode(red("deploy-1"))])

        async def created() -> bool:
            return bool(await db_pool.fetchval("SELECT count(*) FROM incidents"))

        await eventually(created, what="the incident")
        ack = command_message(args(key, command_id="trace-ack-1"), "acknowledge")
        applied = await publish_and_wait(settings, ack, 30)
        assert applied is not None and applied["outcome"] == "applied"
        refused = await publish_and_wait(settings, command_message(args(key), "resolve"), 30)
        assert refused is not None and refused["outcome"] == "rejected"
        async with reading(settings, settings.topic_incident_events) as events:
            records = await events.read_until(2)
        await eventually(
            lambda: len(named(spans, "ingest.outbox.publish")) >= 3, what="publish spans"
        )
    finally:
        await worker.stop()

    commands = {
        (s.attributes or {})["ingest.command.verb"]: s for s in named(spans, "ingest.command")
    }
    acknowledge, resolve = commands["acknowledge"], commands["resolve"]
    assert acknowledge.attributes is not None and resolve.attributes is not None
    assert acknowledge.attributes["ingest.command.id"] == "trace-ack-1"
    assert acknowledge.attributes["ingest.command.outcome"] == "applied"
    assert acknowledge.attributes["ingest.incident.key"] == key
    assert acknowledge.attributes["ingest.incident.id"] == applied["incidentId"]
    assert resolve.attributes["ingest.command.outcome"] == "rejected"
    assert resolve.attributes["ingest.command.reason"] == "rationale_required"
    stores = {s.context.span_id for s in named(spans, "ingest.store")}
    assert acknowledge.parent is not None and acknowledge.parent.span_id in stores
    # The acknowledgement's event carries the command span's context.
    [acknowledged] = [r for r in records if header(r, "ce_type") == b"incident.acknowledged"]
    assert parse_traceparent(header(acknowledged, "traceparent")) == (
        acknowledge.context.trace_id,
        acknowledge.context.span_id,
    )
    # Outcomes are published too, in spans of their own.
    results = [
        s
        for s in named(spans, "ingest.outbox.publish")
        if (s.attributes or {})["messaging.destination.name"] == settings.topic_command_results
    ]
    assert results
