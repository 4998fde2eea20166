"""Prometheus metrics of the gateway, in a registry of its own (its own /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ingest_gateway_requests_total",
            "Requests answered by the gateway, by source and HTTP status (499: the client hung up "
            "before its answer; 408: its body did not arrive in time).",
            ["source", "status"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "ingest_gateway_produce_seconds",
            "Time from producing a record to the broker's acknowledgement (acks=all).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.request_bytes = Counter(
            "ingest_gateway_request_bytes",
            "Request body bytes read, by source.",
            ["source"],
            registry=r,
        )
        self.header_timeouts = Counter(
            "ingest_gateway_header_timeouts_total",
            "Connections answered 408 and closed because their request headers did not arrive "
            "within the header deadline.",
            registry=r,
        )
