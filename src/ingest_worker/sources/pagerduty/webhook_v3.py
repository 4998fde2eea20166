"""PagerDuty Webhooks v3 (`{"event": {...}}`): what PagerDuty sends about its incidents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import Field

from ingest_worker.core.values import (
    EvidenceInput,
    IncidentInput,
    Recovery,
    Severity,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.pagerduty.common import (
    NAME,
    PAGERDUTY_ALERT,
    WEBHOOK_PREFIX,
    missing_identity,
)
from ingest_worker.sources.times import ToolTimestamp
from ingest_worker.sources.wire import (
    MAX_TEXT,
    Count32,
    Ref,
    RequiredRef,
    Signal,
    Text,
    WireModel,
)


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
        raise missing_identity(f"{kind} without event.data.id (or event.data.incident.id)")
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
