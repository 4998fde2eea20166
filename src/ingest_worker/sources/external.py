"""Generic ingestion (the generic request schema) on `signals.external`.

- Fields and limits of the generic request schema: `sourceType` one of its six values,
  `sourceRef` ≤ 512, `title` ≤ 500, `description` ≤ 5000, `timeline.start` required,
  `severity` one of critical, high, medium, low, info; `collectionContext` windows 1–120 minutes.
- Key: `external:<sourceType lower-case>:<sourceRef>`; the same `sourceRef` again is the same
  incident (the request schema itself defines no idempotency key). `sourceType` has no `:`,
  so the key reads back unambiguously even when `sourceRef` has one.
- No `timeline.resolvedAt` nor `timeline.end` (absent or null) → a trigger at `timeline.start`.
  With one → the same trigger *and* a recovery of the key at that time: an incident reported
  after the fact is created already resolved, and one reported earlier is resolved.
  When both are set, `resolvedAt` wins (it names the resolution; `end` may mean the end of
  impact). A resolution before `start` is a schema violation.
- Severity: critical, high → RED; medium, low, info → YELLOW; absent → YELLOW (an
  unknown level counts as medium).
- Evidence: the request (without `sourcePayload` and `evidenceLite`), `sourcePayload` as its own
  piece and `evidenceLite` as another, all redacted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StrictBool, model_validator

from ingest_worker.core.values import (
    EvidenceInput,
    IncidentInput,
    Recovery,
    Severity,
    SignalEffect,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Name,
    Ref,
    RequiredName,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
    WireModel,
)

NAME: Final = "external"
EXTERNAL_ALERT: Final = "EXTERNAL_ALERT"
RED_SEVERITIES: Final = frozenset({"critical", "high"})


class SourceType(StrEnum):
    SCENARIO = "SCENARIO"
    GOOGLE_CLOUD = "GOOGLE_CLOUD"
    PAGERDUTY = "PAGERDUTY"
    DATADOG = "DATADOG"
    NEW_RELIC = "NEW_RELIC"
    CUSTOM = "CUSTOM"


ExternalSeverity = Literal["critical", "high", "medium", "low", "info"]
Window = Annotated[int, Field(strict=True, ge=1, le=120)]
Labels = Annotated[dict[Name, Text], Field(max_length=MAX_ITEMS)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class Timeline(WireModel):
    start: Timestamp
    end: Timestamp | None = None
    detectedAt: Timestamp | None = None
    resolvedAt: Timestamp | None = None

    @property
    def resolved(self) -> datetime | None:
        """`resolvedAt`, else `end`, else None (open)."""
        return self.resolvedAt or self.end

    @model_validator(mode="after")
    def _resolution_after_start(self) -> Timeline:
        for name in ("end", "resolvedAt"):
            moment = getattr(self, name)
            if moment is not None and moment < self.start:
                raise ValueError(f"timeline.{name} is before timeline.start")
        return self


class Metadata(WireModel):
    service: Ref | None = None
    region: Ref | None = None
    environment: Ref | None = None
    team: Ref | None = None
    tags: Labels | None = None
    customFields: dict[str, Any] | None = None


class MetricPoint(WireModel):
    name: RequiredName
    value: Number
    timestamp: Timestamp
    labels: Labels | None = None


class LogLine(WireModel):
    message: Text
    level: Ref | None = None
    timestamp: Timestamp
    service: Ref | None = None


class TraceSpan(WireModel):
    traceId: RequiredRef
    spanId: RequiredRef
    service: Ref
    operation: Name
    duration: Number | None = None
    timestamp: Timestamp


class EventItem(WireModel):
    type: RequiredRef
    description: Text
    timestamp: Timestamp
    metadata: dict[str, Any] | None = None


class EvidenceLite(WireModel):
    metrics: Annotated[list[MetricPoint], Field(max_length=MAX_ITEMS)] | None = None
    logs: Annotated[list[LogLine], Field(max_length=MAX_ITEMS)] | None = None
    traces: Annotated[list[TraceSpan], Field(max_length=MAX_ITEMS)] | None = None
    events: Annotated[list[EventItem], Field(max_length=MAX_ITEMS)] | None = None


class CollectionContext(WireModel):
    windowMinutesBefore: Window | None = None
    windowMinutesAfter: Window | None = None
    forceCollect: StrictBool | None = None


class ExternalIncidentRequest(Signal):
    """The generic ingestion request."""

    sourceType: SourceType
    sourceRef: RequiredRef
    title: RequiredName
    timeline: Timeline
    description: Text | None = None
    severity: ExternalSeverity | None = None
    metadata: Metadata | None = None
    evidenceLite: EvidenceLite | None = None
    sourcePayload: Any = None
    collectionContext: CollectionContext | None = None


def external_severity(severity: str | None) -> Severity:
    return Severity.RED if severity in RED_SEVERITIES else Severity.YELLOW


def _correlation(metadata: Metadata | None) -> Iterable[str]:
    if metadata is None:
        return
    for prefix, value in (
        ("service", metadata.service),
        ("env", metadata.environment),
        ("region", metadata.region),
        ("team", metadata.team),
    ):
        if value:
            yield f"{prefix}:{value}"


def map_external(request: ExternalIncidentRequest) -> tuple[SignalEffect, ...]:
    """A request → its trigger, and the recovery of its key when the timeline is resolved."""
    source_ref = f"{request.sourceType.value.lower()}:{request.sourceRef}"
    key = f"{NAME}:{source_ref}"
    full = SignalPayload.of(request)
    data = full.payload
    request_only = {k: v for k, v in data.items() if k not in ("sourcePayload", "evidenceLite")}
    # The primary evidence is the request itself; its bulky parts are pieces of their own.
    source = SignalPayload(payload=request_only, sha256=full.sha256, clean=full.clean)
    pieces: list[EvidenceInput] = []
    if data.get("sourcePayload") is not None:
        payload = {"sourceType": request.sourceType.value, "sourcePayload": data["sourcePayload"]}
        pieces.append(evidence("external_source_payload", source_ref, payload, full))
    if data.get("evidenceLite") is not None:
        pieces.append(evidence("external_evidence_lite", source_ref, data["evidenceLite"], full))
    metadata = request.metadata
    classification: dict[str, Any] = {
        "error_code": EXTERNAL_ALERT,
        "signal_type": NAME,
        "source_severity": request.severity,
        "source_type": request.sourceType.value,
        "source_ref": request.sourceRef,
        "service": metadata.service if metadata else None,
        "region": metadata.region if metadata else None,
        "team": metadata.team if metadata else None,
        "description": request.description,
    }
    trigger: IncidentInput = build_incident(
        key=key,
        kind=NAME,
        severity=external_severity(request.severity),
        title=request.title,
        env=(metadata.environment or None) if metadata else None,
        classification=classification,
        source_ref=source_ref,
        signal_time=request.timeline.start,
        correlation=_correlation(metadata),
        source=source,
        extra_evidence=pieces,
    )
    resolved = request.timeline.resolved
    if resolved is None:
        return (trigger,)
    recovery = Recovery(
        source_kind=NAME,
        scope=key,
        signal_time=resolved,
        signal_sha256=full.sha256,
        evidence=(trigger.evidence[0],),
    )
    return (trigger, recovery)


SOURCE: Final = Source(
    name=NAME,
    topic="signals.external",
    setting="external",
    summary="Generic ingestion requests (the generic request schema), idempotent by sourceType and sourceRef.",
    error_codes=(EXTERNAL_ALERT,),
    shapes=(
        Shape(
            "seed",
            ExternalIncidentRequest,
            map_external,
            schema_file="external-incident-request.schema.json",
        ),
    ),
)
