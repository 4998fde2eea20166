"""The batch pipeline: decode each record on its own, apply the batch in one transaction, dead-letter
bad records, and only then let the caller commit offsets.

Knows nothing about FastStream: records come in as `SignalRecord`, the store and the dead-letter
topic sit behind protocols, so the same code runs under the worker, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import structlog

from ingest_worker.core.errors import (
    InvalidSignal,
    PermanentStoreError,
    RejectReason,
)
from ingest_worker.core.tenants import DEFAULT_TENANT
from ingest_worker.core.values import (
    BatchInput,
    Command,
    RejectedPart,
)
from ingest_worker.delivery.retry import Backoff, retry_transient
from ingest_worker.delivery.tenancy import record_tenant
from ingest_worker.metrics import Metrics, TenantLabels
from ingest_worker.sources.contract import Source
from ingest_worker.sources.decode import decode_record, rejected_parts_message
from ingest_worker.store.commands import Receipt
from ingest_worker.store.incidents import BatchResult, LockTurn

log = structlog.get_logger("ingest_worker.pipeline")

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Longest `x-dlq-error` header value, in characters.
MAX_ERROR_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """One consumed Kafka record, exactly as it came off the wire."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @property
    def time(self) -> datetime | None:
        """The record's timestamp (Kafka's, -1 or None when it has none)."""
        if self.timestamp_ms is None or self.timestamp_ms < 0:
            return None
        return _EPOCH + timedelta(milliseconds=self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that can never be processed, with the reason it goes to the dead-letter topic."""

    record: SignalRecord
    reason: str
    message: str
    failed_at: datetime


@dataclass(slots=True)
class BatchReport:
    """What happened to one batch: outcome counts per topic and the dead letters sent."""

    records: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_written: int = 0
    #: ((record index, input), outcome) of every applied input.
    input_outcomes: list[tuple[tuple[int, BatchInput], str]] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_, outcome), count in self.outcomes.items():
            totals[outcome] += count
        return dict(totals)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A decoded batch: its incident inputs (with their record index), dead letters, ignored."""

    records: Sequence[SignalRecord]
    inputs: list[tuple[int, BatchInput]]
    dead: list[DeadLetter]
    ignored: list[int]
    #: The tenant of each record; None: every record is the default tenant's.
    tenants: list[str] | None = None


class IncidentStore(Protocol):
    """Applies a batch of incident inputs atomically (see `store.apply_batch`)."""

    async def apply(
        self,
        inputs: Sequence[BatchInput],
        *,
        tenants: Sequence[str] | None = None,
        turn: LockTurn | None = None,
    ) -> BatchResult: ...


class DeadLetterSink(Protocol):
    """Publishes dead letters and returns once the broker acknowledged every one."""

    async def publish(self, letters: Sequence[DeadLetter]) -> None: ...


class BatchProcessor:
    """Processes consumed batches. Safe to call again with the same records (idempotent effects)."""

    def __init__(
        self,
        *,
        topic_sources: Mapping[str, Source],
        store: IncidentStore,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        max_message_bytes: int,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        stopping: asyncio.Event,
        on_fault: Callable[[bool], None] | None = None,
        on_events_written: Callable[[], None] | None = None,
        command_max_future_skew_seconds: float | None = None,
        tenant_from_topic_prefix: bool = False,
        tenant_labels: TenantLabels | None = None,
    ) -> None:
        """`on_events_written()`: a transaction that wrote events committed (the outbox
        publisher can start on them; the dead letters and the offset commit still follow).
        `tenant_from_topic_prefix`: a record's tenant is its topic's `<tenant>.` prefix, not
        its `tenant` header. `tenant_labels`: count signals per tenant as well."""
        self._topic_sources = dict(topic_sources)
        self._store = store
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._max_bytes = max_message_bytes
        self._retry = (retry_initial_seconds, retry_max_seconds)
        self._stopping = stopping
        self._on_fault = on_fault
        self._on_events_written = on_events_written
        self._command_skew = (
            None
            if command_max_future_skew_seconds is None
            else timedelta(seconds=command_max_future_skew_seconds)
        )
        self._known_topics = frozenset(topic_sources) if tenant_from_topic_prefix else None
        self._tenant_labels = tenant_labels

    def _count_commands(self, result: BatchResult) -> None:
        for change in result.transitions:
            self._metrics.transitions.labels(
                from_status=change.from_status or "", to_status=change.to_status, cause=change.cause
            ).inc()
            if change.to_acknowledge is not None:
                self._metrics.time_to_acknowledge.observe(change.to_acknowledge)
            if change.to_resolve is not None:
                self._metrics.time_to_resolve.observe(change.to_resolve)
        for item in result.commands:
            # Decisions only: a redelivered command republishes its stored outcome, counted apart.
            counter = (
                self._metrics.commands_republished if item.republished else self._metrics.commands
            )
            counter.labels(type=item.verb, outcome=item.outcome).inc()
            _log_command(item)

    def _backoff(self) -> Backoff:
        return Backoff(*self._retry)

    def prepare(self, records: Sequence[SignalRecord]) -> PreparedBatch:
        """The CPU part of a batch (decode, validate, map): no I/O, may overlap the previous batch.

        Every record on its own: its tenant first (a malformed one is `invalid_tenant`), then
        its value."""
        inputs: list[tuple[int, BatchInput]] = []
        dead: list[DeadLetter] = []
        ignored: list[int] = []
        tenants: list[str] | None = None
        known = self._known_topics
        for index, record in enumerate(records):
            topic = record.topic
            try:
                if known is not None or record.headers:
                    tenant, topic = record_tenant(topic, record.headers, known)
                    if tenant != DEFAULT_TENANT:
                        if tenants is None:
                            tenants = [DEFAULT_TENANT] * len(records)
                        tenants[index] = tenant
                source = self._topic_sources.get(topic)
                if source is None:
                    raise InvalidSignal(
                        RejectReason.UNMAPPABLE,
                        f"no signal kind is configured for topic {record.topic}",
                    )
                mapped = decode_record(
                    source, record.value, max_bytes=self._max_bytes, record_time=record.time
                )
            except InvalidSignal as exc:
                dead.append(_dead_letter(record, exc.reason.value, exc.message))
                continue
            if any(isinstance(item, RejectedPart) for item in mapped):
                # The valid parts are applied below; the record is dead-lettered as well.
                dead.append(
                    _dead_letter(
                        record,
                        RejectReason.PARTIALLY_INVALID.value,
                        rejected_parts_message(mapped),
                    )
                )
            applied = [item for item in mapped if not isinstance(item, RejectedPart)]
            if self._command_skew is not None and any(isinstance(i, Command) for i in applied):
                # The worker's clock bounds a command's time: the one rule that reads it, and
                # its outcome is stored in the receipt, so a redelivery is never decided again.
                not_after = datetime.now(UTC) + self._command_skew
                applied = [
                    replace(item, not_after=not_after) if isinstance(item, Command) else item
                    for item in applied
                ]
            if not applied:
                ignored.append(index)
            inputs.extend((index, item) for item in applied)
        return PreparedBatch(records, inputs, dead, ignored, tenants)

    async def complete(self, prepared: PreparedBatch, turn: LockTurn | None = None) -> BatchReport:
        """Apply a prepared batch: one transaction, then the dead letters. `turn`: the batch's
        turn among those its worker writes at once (see `store.incidents.LockTurn`).

        Returns only when the store transaction committed and every dead letter was acknowledged.
        """
        records = prepared.records
        dead = list(prepared.dead)
        report = BatchReport(records=len(records))
        for index in prepared.ignored:
            report.outcomes[(records[index].topic, "ignored")] += 1
        inputs = prepared.inputs
        if inputs:
            outcomes, dead_from_store, events = await self._apply(
                records, inputs, prepared.tenants, turn
            )
            report.events_written = events
            report.input_outcomes = outcomes
            if events and self._on_events_written is not None:
                self._on_events_written()
            dead.extend(dead_from_store)
            # A record yielding several inputs (a GitHub job with two failed steps) counts once per
            # input: the counters describe incidents touched, per topic.
            for (index, _), outcome in outcomes:
                report.outcomes[(records[index].topic, outcome)] += 1

        if dead:
            await retry_transient(
                lambda: self._dead_letters.publish(dead),
                what="dead_letter_publish",
                backoff=self._backoff(),
                stopping=self._stopping,
                metrics=self._metrics,
                on_fault=self._on_fault,
            )
            for letter in dead:
                report.outcomes[(letter.record.topic, "dead_lettered")] += 1
                self._metrics.dead_letters.labels(
                    topic=letter.record.topic, reason=letter.reason
                ).inc()
                log.warning(
                    "dead_lettered",
                    topic=letter.record.topic,
                    partition=letter.record.partition,
                    offset=letter.record.offset,
                    reason=letter.reason,
                    error=letter.message,
                )
            report.dead_letters = dead
        for (topic, outcome), count in report.outcomes.items():
            self._metrics.signals.labels(topic=topic, outcome=outcome).inc(count)
        if self._tenant_labels is not None:
            self._tenant_labels.count(prepared, report)
        return report

    def _store_apply(
        self,
        items: list[BatchInput],
        pairs: list[tuple[int, BatchInput]],
        tenants: list[str] | None,
        turn: LockTurn | None,
    ) -> Awaitable[BatchResult]:
        if tenants is None:
            return self._store.apply(items, turn=turn)
        return self._store.apply(items, tenants=[tenants[index] for index, _ in pairs], turn=turn)

    async def _apply(
        self,
        records: Sequence[SignalRecord],
        inputs: list[tuple[int, BatchInput]],
        tenants: list[str] | None = None,
        turn: LockTurn | None = None,
    ) -> tuple[list[tuple[tuple[int, BatchInput], str]], list[DeadLetter], int]:
        """Apply all inputs in one transaction; on a permanent store error, isolate the culprits."""
        batch = [item for _, item in inputs]
        try:
            result = await retry_transient(
                lambda: self._store_apply(batch, inputs, tenants, turn),
                what="store",
                backoff=self._backoff(),
                stopping=self._stopping,
                metrics=self._metrics,
                on_fault=self._on_fault,
            )
            self._count_commands(result)
            return (
                list(zip(inputs, [o.value for o in result.outcomes], strict=True)),
                [],
                result.events_written,
            )
        except PermanentStoreError as exc:
            log.error("batch_rejected_by_store", error=str(exc), inputs=len(batch))
        # Poison input somewhere in the batch: apply records one by one so that a single bad
        # record is dead-lettered and the good ones still land. Slow, and only ever on a bug.
        applied: list[tuple[tuple[int, BatchInput], str]] = []
        dead: list[DeadLetter] = []
        events = 0
        by_record: dict[int, list[tuple[int, BatchInput]]] = {}
        for pair in inputs:
            by_record.setdefault(pair[0], []).append(pair)
        for index, pairs in by_record.items():
            items = [item for _, item in pairs]
            try:
                result = await retry_transient(
                    lambda items=items, pairs=pairs: self._store_apply(  # type: ignore[misc]
                        items, pairs, tenants, turn
                    ),
                    what="store",
                    backoff=self._backoff(),
                    stopping=self._stopping,
                    metrics=self._metrics,
                    on_fault=self._on_fault,
                )
            except PermanentStoreError as exc:
                dead.append(
                    _dead_letter(records[index], RejectReason.UNPROCESSABLE.value, str(exc))
                )
                continue
            self._count_commands(result)
            events += result.events_written
            applied.extend(zip(pairs, [o.value for o in result.outcomes], strict=True))
        return applied, dead, events


def _log_command(item: Receipt) -> None:
    log.info(
        "command_outcome",
        command_id=item.command_id,
        type=item.verb,
        outcome=item.outcome,
        reason=item.reason,
        incident_id=item.incident_id,
        republished=item.republished,
    )


def _dead_letter(record: SignalRecord, reason: str, message: str) -> DeadLetter:
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 1] + "…"
    return DeadLetter(record=record, reason=reason, message=message, failed_at=datetime.now(UTC))
