"""Prometheus metrics of `ingest-worker notify`, per subscription."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifyMetrics:
    """Every series the notifier adds to its `/metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.delivered = Counter(
            "ingest_notify_delivered_total",
            "Events delivered (a 2xx answer), by subscription.",
            ["subscription"],
            registry=r,
        )
        self.retried = Counter(
            "ingest_notify_retries_total",
            "Attempts scheduled again after a failure, by subscription.",
            ["subscription"],
            registry=r,
        )
        self.failed = Counter(
            "ingest_notify_failures_total",
            "Failed attempts, by subscription and reason (http_<status>, timeout, …).",
            ["subscription", "reason"],
            registry=r,
        )
        self.parked = Counter(
            "ingest_notify_parked_total",
            "Events parked on the notifications dead-letter topic, by subscription and reason.",
            ["subscription", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "ingest_notify_latency_seconds",
            "From the event's publication on the events topic to its delivery, by subscription.",
            ["subscription"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.paused = Gauge(
            "ingest_notify_paused",
            "1 while a subscription is paused (its events are parked), else 0.",
            ["subscription"],
            registry=r,
        )
        self.queued = Gauge(
            "ingest_notify_queued",
            "Events waiting in memory for delivery, by subscription.",
            ["subscription"],
            registry=r,
        )
