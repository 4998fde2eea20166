"""PagerDuty Events API v2: what tools send *to* PagerDuty (the fallback shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from ingest_worker.core.canonical import canonical_json, sha256_hex
from ingest_worker.core.redaction import may_contain_secrets, redact
from ingest_worker.core.values import (
    EvidenceInput,
    IncidentInput,
    Recovery,
    Severity,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence, pick
from ingest_worker.sources.pagerduty.common import (
    EVENTS_PREFIX,
    MAX_DEDUP_KEY,
    NAME,
    PAGERDUTY_ALERT,
    missing_identity,
    schema_violation,
)
from ingest_worker.sources.times import ToolTimestamp
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Name,
    Ref,
    Signal,
    Text,
    WireModel,
)

DedupKey = Annotated[str, StringConstraints(max_length=MAX_DEDUP_KEY)]
EVENTS_SEVERITIES: Final = frozenset({"critical", "error", "warning", "info"})
RED_EVENT_SEVERITIES: Final = frozenset({"critical", "error"})


class EventsPayload(WireModel):
    """`payload`: PagerDuty requires it, with `summary`, `source` and a `severity` of
    critical, error, warning or info, only for a trigger (checked by the mapper). Senders such as
    Alertmanager's PagerDuty receiver send it on acknowledge and resolve too, where PagerDuty
    does not read it, so there any of these may be missing, empty or of the sender's own."""

    summary: Text | None = None
    source: Ref | None = None
    severity: Ref | None = Field(
        default=None,
        description="critical, error, warning or info (a trigger); not read on other actions.",
    )
    timestamp: ToolTimestamp | None = None
    component: Ref | None = None
    group: Ref | None = None
    class_: Ref | None = Field(default=None, alias="class")
    custom_details: Any = None


class EventsLink(WireModel):
    href: Text
    text: Text | None = None


class EventsImage(WireModel):
    src: Text
    href: Text | None = None
    alt: Text | None = None


class PagerDutyEventsV2(Signal):
    """An Events API v2 event (`POST /v2/enqueue`), plus the producer's `received_at`."""

    event_action: Literal["trigger", "acknowledge", "resolve"]
    routing_key: Ref | None = None
    dedup_key: DedupKey | None = None
    payload: EventsPayload | None = None
    client: Name | None = None
    client_url: Text | None = None
    links: Annotated[list[EventsLink], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    images: Annotated[list[EventsImage], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    received_at: ToolTimestamp | None = Field(
        default=None,
        description=(
            "When the producer received the event (added by the gateway): the signal time of "
            "acknowledge and resolve events, and of triggers without payload.timestamp."
        ),
    )


def events_payload(event: PagerDutyEventsV2) -> SignalPayload:
    """The event's signal payload without `routing_key` (a credential), and without
    `received_at` unless it is the signal time; hashed and redacted as `SignalPayload.of` does."""
    data = event.model_dump(mode="json", by_alias=True)
    data.pop("routing_key", None)
    if event.payload is not None and event.payload.timestamp is not None:
        # Not the signal time then: a retried delivery (a new received_at) stays a duplicate.
        data.pop("received_at", None)
    text = canonical_json(data)
    if may_contain_secrets(text):
        return SignalPayload(payload=redact(data), sha256=sha256_hex(text), clean=False)
    return SignalPayload(payload=data, sha256=sha256_hex(text), clean=True)


def _event_time(event: PagerDutyEventsV2) -> datetime:
    if event.payload is not None and event.payload.timestamp is not None:
        return event.payload.timestamp
    if event.received_at is not None:
        return event.received_at
    where = "payload.timestamp or received_at" if event.event_action == "trigger" else "received_at"
    raise schema_violation(
        f"{where}: required for an Events API v2 {event.event_action} event (its signal time; "
        "the producer adds received_at when it receives the event)"
    )


def map_events_v2(event: PagerDutyEventsV2) -> tuple[SignalEffect, ...]:
    """trigger → incident input, resolve → recovery, acknowledge → source transition."""
    dedup_key = event.dedup_key
    if not dedup_key:
        raise missing_identity(
            f"an Events API v2 {event.event_action} event without dedup_key cannot be "
            "resolved or acknowledged later"
        )
    if event.routing_key and dedup_key == event.routing_key:
        raise schema_violation(
            "dedup_key: equals routing_key, a credential that the incident key would publish"
        )
    if event.event_action == "trigger":
        return (_events_incident(event, dedup_key),)
    signal_time = _event_time(event)
    key = f"{EVENTS_PREFIX}:{dedup_key}"
    source = events_payload(event)
    primary = EvidenceInput(
        kind=NAME, ref=f"{EVENTS_PREFIX}:{dedup_key}@sha256:{source.sha256}", payload=source.payload
    )
    if event.event_action == "resolve":
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=signal_time,
                signal_sha256=source.sha256,
                evidence=(primary,),
            ),
        )
    return (
        SourceTransition(
            incident_key=key,
            source_kind=NAME,
            verb="acknowledge",
            signal_time=signal_time,
            signal_sha256=source.sha256,
            actor=None,
            evidence=(primary,),
        ),
    )


def _events_incident(event: PagerDutyEventsV2, dedup_key: str) -> IncidentInput:
    payload = event.payload
    missing = [
        f"payload.{name}"
        for name in ("summary", "source", "severity")
        if payload is None or not getattr(payload, name)
    ]
    if missing:
        raise schema_violation(f"{', '.join(missing)}: required for a trigger event")
    assert payload is not None and payload.summary and payload.severity
    if payload.severity not in EVENTS_SEVERITIES:
        raise schema_violation(
            "payload.severity: must be critical, error, warning or info for a trigger event"
        )
    signal_time = _event_time(event)
    source = events_payload(event)
    data = source.payload
    correlation = [f"pagerduty_dedup:{dedup_key}"]
    for prefix, value in (
        ("source", payload.source),
        ("component", payload.component),
        ("group", payload.group),
        ("class", payload.class_),
    ):
        if value:
            correlation.append(f"{prefix}:{value}")
    extra = []
    links = pick(data, "client", "client_url", "links", "images")
    if any(links.values()):
        extra.append(
            evidence("pagerduty_links", f"{EVENTS_PREFIX}:{dedup_key}:links", links, source)
        )
    details = data["payload"].get("custom_details")
    if details is not None:
        extra.append(
            evidence(
                "pagerduty_custom_details",
                f"{EVENTS_PREFIX}:{dedup_key}:custom_details",
                {"custom_details": details},
                source,
            )
        )
    severity = Severity.RED if payload.severity in RED_EVENT_SEVERITIES else Severity.YELLOW
    return build_incident(
        key=f"{EVENTS_PREFIX}:{dedup_key}",
        kind=NAME,
        severity=severity,
        title=payload.summary,
        env=None,
        classification={
            "error_code": PAGERDUTY_ALERT,
            "signal_type": NAME,
            "signal_format": "events_v2",
            "source_severity": payload.severity,
            "event_action": event.event_action,
            "dedup_key": dedup_key,
            "source": payload.source,
            "component": payload.component,
            "group": payload.group,
            "class": payload.class_,
            "client": event.client,
        },
        source_ref=f"{EVENTS_PREFIX}:{dedup_key}",
        signal_time=signal_time,
        correlation=correlation,
        source=source,
        extra_evidence=extra,
    )
