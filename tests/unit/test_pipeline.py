"""The batch pipeline's own decisions, with in-memory twins of the store and the dead-letter topic.

Delivery semantics against the real broker and PostgreSQL live in tests/integration; these pin
the logic: retry transient faults, isolate poison records, never commit on shutdown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from ingest_worker.core.errors import PermanentStoreError, ShutdownRequested, TransientError
from ingest_worker.core.values import IncidentInput, Recovery
from ingest_worker.delivery.batches import (
    BatchProcessor,
    BatchReport,
    DeadLetter,
    SignalRecord,
)
from ingest_worker.metrics import Metrics
from ingest_worker.sources.registry import BY_NAME
from ingest_worker.store.incidents import BatchResult, Outcome
from tests.sources import FIXTURES

TOPIC = "signals.deploy-status"


class InMemoryStore:
    """Applies inputs like the real store would count them; can fail on demand."""

    def __init__(self, transient_failures: int = 0, poison_key: str | None = None) -> None:
        self.transient_failures = transient_failures
        self.poison_key = poison_key
        self.applied: list[IncidentInput | Recovery] = []
        self.calls = 0

    async def apply(
        self, inputs: Sequence[IncidentInput | Recovery], *, turn: object = None
    ) -> BatchResult:
        self.calls += 1
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientError("database unavailable")
        if self.poison_key is not None and any(
            getattr(i, "incident_key", None) == self.poison_key for i in inputs
        ):
            raise PermanentStoreError("DataError: refused")
        seen = {(_key(i), i.signal_sha256) for i in self.applied}
        outcomes = []
        for item in inputs:
            identity = (_key(item), item.signal_sha256)
            fresh = Outcome.CREATED if isinstance(item, IncidentInput) else Outcome.RECOVERED
            outcomes.append(Outcome.DUPLICATE if identity in seen else fresh)
            if identity not in seen:
                seen.add(identity)
                self.applied.append(item)
        return BatchResult(tuple(outcomes), sum(o is Outcome.CREATED for o in outcomes))


def _key(item: IncidentInput | Recovery) -> str:
    return item.incident_key if isinstance(item, IncidentInput) else f"recovery:{item.scope}"


class InMemorySink:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def record(value: bytes | None, offset: int) -> SignalRecord:
    return SignalRecord(topic=TOPIC, partition=0, offset=offset, key=b"k", value=value)


def deploy(deploy_id: str, status: str = "RED") -> bytes:
    signal = json.loads((FIXTURES / "deploy-status-red.json").read_text())
    signal.update(deployId=deploy_id, status=status)
    return json.dumps(signal).encode()


def processor(store: InMemoryStore, sink: InMemorySink, stopping: asyncio.Event) -> BatchProcessor:
    return BatchProcessor(
        topic_sources={TOPIC: BY_NAME["deploy_status"]},
        store=store,
        dead_letters=sink,
        metrics=Metrics(),
        max_message_bytes=4096,
        retry_initial_seconds=0.001,
        retry_max_seconds=0.002,
        stopping=stopping,
    )


async def process(pipeline: BatchProcessor, records: Sequence[SignalRecord]) -> BatchReport:
    """One batch to the point where its offsets may be committed, as the writer chain runs it."""
    return await pipeline.complete(pipeline.prepare(records))


async def test_each_record_gets_an_outcome_and_bad_ones_a_reason() -> None:
    store, sink = InMemoryStore(), InMemorySink()
    batch = [
        record(deploy("a"), 0),
        record(b"{nope", 1),
        record(deploy("a"), 2),
        record(deploy("g", status="GREEN"), 3),
        record(None, 4),
    ]
    report = await process(processor(store, sink, asyncio.Event()), batch)
    assert report.totals() == {"created": 1, "duplicate": 1, "recovered": 1, "dead_lettered": 2}
    assert [(d.record.offset, d.reason) for d in sink.letters] == [
        (1, "invalid_json"),
        (4, "empty_value"),
    ]


async def test_transient_store_faults_are_retried_and_nothing_is_dead_lettered() -> None:
    store, sink = InMemoryStore(transient_failures=3), InMemorySink()
    report = await process(processor(store, sink, asyncio.Event()), [record(deploy("a"), 0)])
    assert store.calls == 4
    assert report.totals() == {"created": 1}
    assert sink.letters == []


async def test_a_record_the_store_refuses_is_isolated_and_the_rest_of_the_batch_lands() -> None:
    poison = "deploy_status:prod:bad:2024-01-01T00:00:00Z"
    store, sink = InMemoryStore(poison_key=poison), InMemorySink()
    batch = [record(deploy("a"), 0), record(deploy("bad"), 1), record(deploy("b"), 2)]
    report = await process(processor(store, sink, asyncio.Event()), batch)
    assert sorted(i.incident_key for i in store.applied) == [
        "deploy_status:prod:a:2024-01-01T00:00:00Z",
        "deploy_status:prod:b:2024-01-01T00:00:00Z",
    ]
    assert [(d.record.offset, d.reason) for d in sink.letters] == [(1, "unprocessable")]
    assert report.totals() == {"created": 2, "dead_lettered": 1}


async def test_stopping_while_a_fault_is_retried_abandons_the_batch() -> None:
    store, sink = InMemoryStore(transient_failures=10**6), InMemorySink()
    stopping = asyncio.Event()
    work = asyncio.create_task(process(processor(store, sink, stopping), [record(deploy("a"), 0)]))
    while store.calls < 2:  # the fault has been met and is being retried
        await asyncio.sleep(0)
    stopping.set()
    with pytest.raises(ShutdownRequested):
        await work
    assert store.applied == [] and sink.letters == []


@pytest.mark.parametrize("timestamp_ms", [1_767_225_600_123, None, -1])
def test_a_firing_alert_without_a_start_time_takes_its_record_time(
    timestamp_ms: int | None,
) -> None:
    """Grafana's test alert (`startsAt` 0001-01-01T00:00:00Z) is first seen when its record was
    written (its Kafka timestamp), or when it is decoded if the record has none."""
    topic = "signals.grafana"
    pipeline = BatchProcessor(
        topic_sources={topic: BY_NAME["grafana"]},
        store=InMemoryStore(),
        dead_letters=InMemorySink(),
        metrics=Metrics(),
        max_message_bytes=1 << 20,
        retry_initial_seconds=0.001,
        retry_max_seconds=0.002,
        stopping=asyncio.Event(),
    )
    value = (FIXTURES / "firing_startsAt_zero_notifier_alerting.json").read_bytes()
    test_alert = SignalRecord(
        topic=topic, partition=0, offset=0, key=None, value=value, timestamp_ms=timestamp_ms
    )
    before = datetime.now(UTC)
    prepared = pipeline.prepare([test_alert])
    [(_, item)], dead = prepared.inputs, prepared.dead
    assert not dead and isinstance(item, IncidentInput)
    if timestamp_ms is not None and timestamp_ms >= 0:
        assert item.signal_time == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    else:
        assert before <= item.signal_time <= datetime.now(UTC)
