"""Prometheus metrics of the worker, in a registry of their own."""

from __future__ import annotations

from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from ingest_worker.delivery.batches import BatchReport, PreparedBatch

OUTCOMES = ("created", "updated", "duplicate", "recovered", "ignored", "dead_lettered")


class Metrics:
    """Every series the worker exposes on `/metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._consumption(self.registry)
        self._delivery(self.registry)
        self._lifecycle(self.registry)

    def _consumption(self, r: CollectorRegistry) -> None:
        """What was consumed: signals, dead letters, batches, lag."""
        self.signals = Counter(
            "ingest_signals_total",
            "Signals consumed, by topic and outcome.",
            ["topic", "outcome"],
            registry=r,
        )
        self.tenant_signals = Counter(
            "ingest_tenant_signals_total",
            "Signals consumed, by tenant and outcome (only with INGEST_METRICS_TENANT_LABEL; "
            "tenants beyond INGEST_METRICS_MAX_TENANTS count as `other`).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "ingest_dead_letters_total",
            "Records sent to the dead-letter topic, by reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "ingest_batch_duration_seconds",
            "Time from fetch to offset commit of one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batch_records = Histogram(
            "ingest_batch_records",
            "Records per consumed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ingest_consumer_lag",
            "Records behind the partition end, after the last batch.",
            ["topic", "partition"],
            registry=r,
        )

    def _delivery(self, r: CollectorRegistry) -> None:
        """What was published and what went wrong on the way: the outbox, errors, readiness."""
        self.outbox_backlog = Gauge(
            "ingest_outbox_backlog",
            "Committed events not yet published to the events topic.",
            registry=r,
        )
        self.events_published = Counter(
            "ingest_events_published_total",
            "Incident events published, by type.",
            ["type"],
            registry=r,
        )
        self.errors = Counter(
            "ingest_errors_total",
            "Transient faults met (and retried), by component and kind.",
            ["component", "kind"],
            registry=r,
        )
        self.ready = Gauge(
            "ingest_ready",
            "1 when PostgreSQL and the broker answer and partitions are assigned.",
            registry=r,
        )

    def _lifecycle(self, r: CollectorRegistry) -> None:
        """What happened to incidents: commands, statuses, transitions and their durations."""
        self.commands = Counter(
            "ingest_commands_total",
            "Lifecycle command decisions and source-reported transitions, by verb and outcome "
            "(a command is counted when decided, not when its stored outcome is published again).",
            ["type", "outcome"],
            registry=r,
        )
        self.commands_republished = Counter(
            "ingest_command_outcomes_republished_total",
            "Stored command outcomes published again for a command already decided (the same "
            "command redelivered or sent again), by verb and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.incidents = Gauge(
            "ingest_incidents",
            "Incidents by status and severity (every episode), refreshed every few seconds.",
            ["status", "severity"],
            registry=r,
        )
        self.transitions = Counter(
            "ingest_transitions_total",
            "Incident status transitions, by from, to and cause (signal, command or source).",
            ["from_status", "to_status", "cause"],
            registry=r,
        )
        durations = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800)
        self.time_to_acknowledge = Histogram(
            "ingest_time_to_acknowledge_seconds",
            "From an incident's first signal to its acknowledgement (signal and command times).",
            buckets=durations,
            registry=r,
        )
        self.time_to_resolve = Histogram(
            "ingest_time_to_resolve_seconds",
            "From an incident's first signal to its resolution (cancelled incidents excluded).",
            buckets=durations,
            registry=r,
        )


class TenantLabels:
    """Per-tenant signal counts with a bounded label: the first `limit` tenants seen get their
    own series, any later one counts as `other` (a label per tenant must not grow unbounded)."""

    OTHER = "other"

    def __init__(self, metrics: Metrics, limit: int) -> None:
        self._counter = metrics.tenant_signals
        self._limit = limit
        self._seen: set[str] = set()

    def label(self, tenant: str) -> str:
        if tenant in self._seen:
            return tenant
        if len(self._seen) < self._limit:
            self._seen.add(tenant)
            return tenant
        return self.OTHER

    def count(self, prepared: PreparedBatch, report: BatchReport) -> None:
        """Count a processed batch: every record once per input outcome, or as ignored or
        dead-lettered."""
        tenants = prepared.tenants
        tally: Tally[tuple[str, str]] = Tally()

        def tenant_of(index: int) -> str:
            return tenants[index] if tenants is not None else "default"

        for index in prepared.ignored:
            tally[(tenant_of(index), "ignored")] += 1
        index_of = {id(record): i for i, record in enumerate(prepared.records)}
        for letter in report.dead_letters:
            found = index_of.get(id(letter.record))
            tally[(tenant_of(found) if found is not None else "default", "dead_lettered")] += 1
        for (index, _), outcome in report.input_outcomes:
            tally[(tenant_of(index), outcome)] += 1
        for (tenant, outcome), n in tally.items():
            self._counter.labels(tenant=self.label(tenant), outcome=outcome).inc(n)
