"""PagerDuty on one topic, two shapes: Webhooks v3 (`{"event": {...}}`) and Events API v2.

Webhooks v3 (what PagerDuty sends about its incidents), key `pagerduty:<incident id>`:

| `event.event_type` | effect |
|---|---|
| `incident.triggered` | incident input: `urgency` high → RED, low (or none) → YELLOW; title `data.title`; signal time `occurred_at` |
| `incident.resolved` | recovery of the key at `occurred_at` |
| `incident.acknowledged`, `.unacknowledged`, `.reopened`, `.annotated` | source transition `acknowledge`, `unacknowledge`, `reopen`, `annotate` (the note: `data.content`), actor `<agent summary> (<agent id>)` |
| anything else (`incident.priority_updated`, `incident.escalated`, `service.*`, …) | ignored |

The incident id is `event.data.id` when `data` is the incident; for `incident.annotated` (and
other events whose `data` is a note or a responder) it is `event.data.incident.id`. An incident
event without one is `unmappable` (missing identity). Identity: the whole payload (one event per
payload, `event.id` in it), so a redelivery is a duplicate.

Events API v2 (what tools send *to* PagerDuty; the fallback shape), key
`pagerduty-events:<dedup_key>`:

| `event_action` | effect |
|---|---|
| `trigger` | incident input: `payload.severity` critical, error → RED; warning, info → YELLOW; title `payload.summary`; correlation `source:`, `component:`, `group:`, `class:` |
| `resolve` | recovery of the key |
| `acknowledge` | source transition `acknowledge` |

- `payload` (with `summary`, `source`, `severity`) is required only for a trigger, as PagerDuty
  requires it: a resolve or acknowledge may carry one without them (Alertmanager's PagerDuty
  receiver sends its payload on every action, summary and severity as its templates render).

- No `dedup_key` (PagerDuty would generate one, so nothing could ever resolve it): `unmappable`,
  missing identity.
- Signal time: `payload.timestamp` (`+0000` offsets accepted) when present, else `received_at`,
  an RFC 3339 time the producer adds at the top level when it receives the event (the gateway's
  `/v2/enqueue` does). acknowledge and resolve events usually carry no payload (or one without
  a timestamp), hence no time, and a mapper has no clock: without either time they are
  `schema_violation`, as is a trigger.
- `routing_key` is a credential (the integration key): it is dropped from the payload before
  anything is hashed, stored or published, and a `dedup_key` equal to it is refused
  (`schema_violation`) because the incident key would publish it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from ingest_worker.core.canonical import canonical_json, sha256_hex
from ingest_worker.core.errors import InvalidSignal, RejectReason
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
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.signatures import PAGERDUTY_SIGNATURE
from ingest_worker.sources.times import ToolTimestamp
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    MAX_TEXT,
    Count32,
    Name,
    Ref,
    RequiredRef,
    Signal,
    Text,
    WireModel,
)

NAME: Final = "pagerduty"
PAGERDUTY_ALERT: Final = "PAGERDUTY_ALERT"
ERROR_CODES: Final = (PAGERDUTY_ALERT,)
WEBHOOK_PREFIX: Final = "pagerduty"
EVENTS_PREFIX: Final = "pagerduty-events"
#: PagerDuty limits dedup_key to 255 characters.
MAX_DEDUP_KEY: Final = 255


def _schema_violation(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.SCHEMA_VIOLATION, message)


def _missing_identity(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, f"missing identity: {message}")


# --- Webhooks v3 --------------------------------------------------------------------------------


class PagerDutyReference(WireModel):
    """A reference object (`user_reference`, `service_reference`, `incident_reference`, …)."""

    id: RequiredRef
    type: Ref | None = None
    summary: Text | None = None
    html_url: Text | None = None
    self_: Text | None = Field(default=None, alias="self")


class PagerDutyEventData(WireModel):
    """`event.data`: the incident for incident events, a note (`incident_note`, with `incident`
    and `content`) for `incident.annotated`, a service for `service.*`, …"""

    id: Ref | None = None
    type: Ref | None = None
    title: Text | None = None
    status: Ref | None = None
    urgency: Literal["high", "low"] | None = None
    number: Count32 | None = None
    incident_key: Ref | None = None
    html_url: Text | None = None
    self_: Text | None = Field(default=None, alias="self")
    service: PagerDutyReference | None = None
    priority: PagerDutyReference | None = None
    incident: PagerDutyReference | None = None
    # Notes can be longer than a note; the note is cut to 5000 characters.
    content: str | None = None


class PagerDutyEvent(WireModel):
    id: RequiredRef
    event_type: RequiredRef
    resource_type: Ref | None = None
    occurred_at: ToolTimestamp
    agent: PagerDutyReference | None = None
    client: dict[str, Any] | None = None
    data: PagerDutyEventData


class PagerDutyWebhook(Signal):
    """A PagerDuty Webhooks v3 payload: one event."""

    event: PagerDutyEvent


TRANSITIONS: Final = {
    "incident.acknowledged": "acknowledge",
    "incident.unacknowledged": "unacknowledge",
    "incident.reopened": "reopen",
    "incident.annotated": "annotate",
}


def _incident_id(data: PagerDutyEventData) -> str | None:
    if data.incident is not None:
        return data.incident.id
    if data.type in (None, "incident") and data.id:
        return data.id
    return None


def _actor(agent: PagerDutyReference | None) -> str | None:
    if agent is None:
        return None
    summary = (agent.summary or "").strip()
    if summary and len(summary) <= 200:
        return f"{summary} ({agent.id})"
    return agent.id


def _note(content: str | None) -> str | None:
    if content is None:
        return None
    return content if len(content) <= MAX_TEXT else content[: MAX_TEXT - 1] + "…"


def map_webhook(webhook: PagerDutyWebhook) -> tuple[SignalEffect, ...]:
    """triggered → incident input, resolved → recovery, acknowledged / unacknowledged /
    reopened / annotated → source transition, other event types → ignored."""
    event = webhook.event
    kind = event.event_type
    if kind != "incident.triggered" and kind != "incident.resolved" and kind not in TRANSITIONS:
        return ()
    data = event.data
    incident_id = _incident_id(data)
    if incident_id is None:
        raise _missing_identity(f"{kind} without event.data.id (or event.data.incident.id)")
    key = f"{WEBHOOK_PREFIX}:{incident_id}"
    source = SignalPayload.of(webhook)
    primary = EvidenceInput(
        kind=NAME, ref=f"{incident_id}@sha256:{source.sha256}", payload=source.payload
    )
    if kind == "incident.resolved":
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=event.occurred_at,
                signal_sha256=source.sha256,
                evidence=(primary,),
            ),
        )
    if kind in TRANSITIONS:
        verb = TRANSITIONS[kind]
        note = _note(data.content) if verb == "annotate" else None
        return (
            SourceTransition(
                incident_key=key,
                source_kind=NAME,
                verb=verb,
                signal_time=event.occurred_at,
                signal_sha256=source.sha256,
                actor=_actor(event.agent),
                note=source.text(note),
                evidence=(primary,),
            ),
        )
    return (_webhook_incident(webhook, incident_id, key, source),)


def _webhook_incident(
    webhook: PagerDutyWebhook, incident_id: str, key: str, source: SignalPayload
) -> IncidentInput:
    event = webhook.event
    data = event.data
    severity = Severity.RED if data.urgency == "high" else Severity.YELLOW
    correlation: list[str] = []
    service = data.service
    if service is not None:
        correlation.append(f"pagerduty_service:{service.id}")
        if service.summary and len(service.summary) <= 256:
            correlation.append(f"service:{service.summary}")
    if data.incident_key:
        correlation.append(f"pagerduty_dedup:{data.incident_key}")
    payload_data = source.payload["event"]["data"]
    links = {name: payload_data[name] for name in ("html_url", "self") if payload_data.get(name)}
    extra = [evidence("pagerduty_links", f"{incident_id}:links", links, source)] if links else []
    return build_incident(
        key=key,
        kind=NAME,
        severity=severity,
        title=data.title or f"PagerDuty incident {incident_id}",
        env=None,
        classification={
            "error_code": PAGERDUTY_ALERT,
            "signal_type": NAME,
            "signal_format": "webhook_v3",
            "source_severity": data.urgency,
            "event_type": event.event_type,
            "event_id": event.id,
            "status": data.status,
            "incident_number": data.number,
            "priority": data.priority.summary if data.priority is not None else None,
            "service": service.summary if service is not None else None,
            "html_url": data.html_url,
        },
        source_ref=incident_id,
        signal_time=event.occurred_at,
        correlation=correlation,
        source=source,
        extra_evidence=extra,
    )


def is_webhook(data: Mapping[str, Any]) -> bool:
    """A value with `event` is a Webhooks v3 payload, else an Events API v2 event."""
    return "event" in data


# --- Events API v2 ------------------------------------------------------------------------------

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
    raise _schema_violation(
        f"{where}: required for an Events API v2 {event.event_action} event (its signal time; "
        "the producer adds received_at when it receives the event)"
    )


def map_events_v2(event: PagerDutyEventsV2) -> tuple[SignalEffect, ...]:
    """trigger → incident input, resolve → recovery, acknowledge → source transition."""
    dedup_key = event.dedup_key
    if not dedup_key:
        raise _missing_identity(
            f"an Events API v2 {event.event_action} event without dedup_key cannot be "
            "resolved or acknowledged later"
        )
    if event.routing_key and dedup_key == event.routing_key:
        raise _schema_violation(
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
        raise _schema_violation(f"{', '.join(missing)}: required for a trigger event")
    assert payload is not None and payload.summary and payload.severity
    if payload.severity not in EVENTS_SEVERITIES:
        raise _schema_violation(
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


SOURCE: Final = Source(
    name=NAME,
    topic="signals.pagerduty",
    setting="pagerduty",
    summary="PagerDuty Webhooks v3 incident events and Events API v2 events.",
    error_codes=ERROR_CODES,
    signature=PAGERDUTY_SIGNATURE,
    shapes=(
        Shape(
            "webhook_v3",
            PagerDutyWebhook,
            map_webhook,
            claims=is_webhook,
            schema_file="pagerduty-webhook-v3.schema.json",
        ),
        Shape(
            "events_v2",
            PagerDutyEventsV2,
            map_events_v2,
            schema_file="pagerduty-events-v2.schema.json",
        ),
    ),
)
