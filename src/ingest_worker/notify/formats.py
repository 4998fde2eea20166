"""Incident events as read from `incident.events`, and the bodies each format sends.

A record is CloudEvents binary mode: `ce_*` headers, the event body as value (its `snapshot` is
the incident after the event). Formats:

- `cloudevents`: HTTP binding, structured mode (`application/cloudevents+json`): the
  attributes of the record's headers, the body as `data`;
- `slack`: an incoming-webhook message with the title, severity, status and a console link;
- `generic`: `{"id", "type", "time", "tenant", "event": the body, "incident": the snapshot}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest_worker.notify.subscriptions import DEFAULT_TENANT, EventFacts

TENANT_HEADERS = ("tenant", "ce_tenant")


class UndecodableEvent(ValueError):
    """A record of the events topic that is not an incident event (skipped, and logged)."""


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    id: str
    type: str
    time: str
    source: str
    subject: str | None
    tenant: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    body: dict[str, Any]
    #: Kafka's record time (ms): when the event was published.
    published_ms: int

    @property
    def incident_id(self) -> str:
        return str(self.body.get("incident_id") or self.subject or self.id)

    @property
    def snapshot(self) -> dict[str, Any]:
        snapshot = self.body.get("snapshot")
        return snapshot if isinstance(snapshot, dict) else {}

    def facts(self) -> EventFacts:
        snap = self.snapshot
        return EventFacts(
            type=self.type,
            tenant=self.tenant,
            severity=_text(snap.get("severity")),
            source=_text(snap.get("source_kind")),
            env=_text(snap.get("env")),
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def decode_event(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    published_ms: int,
) -> IncidentEvent:
    """The event of one record; UndecodableEvent when it is not one."""
    found = {name.lower(): (raw or b"").decode("utf-8", "replace") for name, raw in headers}
    if value is None:
        raise UndecodableEvent("a record without a value")
    try:
        body = json.loads(value)
    except ValueError:
        raise UndecodableEvent("the value is not JSON") from None
    if not isinstance(body, dict):
        raise UndecodableEvent("the value is not a JSON object")
    event_id = found.get("ce_id") or str(body.get("id") or "")
    event_type = found.get("ce_type") or str(body.get("type") or "")
    if not event_id or not event_type:
        raise UndecodableEvent("no event id or type")
    tenant = next((found[h] for h in TENANT_HEADERS if found.get(h)), None)
    return IncidentEvent(
        id=event_id,
        type=event_type,
        time=found.get("ce_time") or str(body.get("occurred_at") or ""),
        source=found.get("ce_source") or "ingest-worker",
        subject=found.get("ce_subject") or body.get("incident_key"),
        tenant=tenant or str(body.get("tenant") or DEFAULT_TENANT),
        key=key,
        value=value,
        headers=tuple((name, raw or b"") for name, raw in headers),
        body=body,
        published_ms=published_ms,
    )


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def cloudevents_body(event: IncidentEvent) -> bytes:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": "application/json",
        "tenant": event.tenant,
        "data": event.body,
    }
    if event.subject:
        document["subject"] = event.subject
    return _dumps(document)


def generic_body(event: IncidentEvent) -> bytes:
    return _dumps(
        {
            "id": event.id,
            "type": event.type,
            "time": event.time,
            "tenant": event.tenant,
            "event": event.body,
            "incident": event.snapshot,
        }
    )


_EMOJI = {"RED": ":red_circle:", "YELLOW": ":large_yellow_circle:"}


def slack_body(event: IncidentEvent, console_url: str | None) -> bytes:
    snap = event.snapshot
    title = str(snap.get("title") or event.subject or event.incident_id)
    severity = str(snap.get("severity") or "?")
    status = str(snap.get("status") or "?")
    verb = event.type.removeprefix("incident.").replace("_", " ")
    headline = f"{_EMOJI.get(severity, '')} [{severity}] {title} — {verb}, now {status}".strip()
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{severity}"},
        {"type": "mrkdwn", "text": f"*Status*\n{status}"},
    ]
    if snap.get("env"):
        fields.append({"type": "mrkdwn", "text": f"*Env*\n{snap['env']}"})
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(headline)}},
        {"type": "section", "fields": fields},
    ]
    text = headline
    if console_url:
        link = f"{console_url.rstrip('/')}/incidents/{event.incident_id}"
        text = f"{headline} <{link}|open in console>"
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in console"},
                        "url": link,
                    }
                ],
            }
        )
    return _dumps({"text": _escape(text, keep_links=True), "blocks": blocks})


def _escape(text: str, *, keep_links: bool = False) -> str:
    """Slack's mrkdwn escaping of `&`, `<`, `>` (a link we add stays a link)."""
    if keep_links:
        head, sep, link = text.rpartition(" <")
        if sep and link.endswith(">"):
            return _escape(head) + sep + link
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(event: IncidentEvent, fmt: str, console_url: str | None) -> tuple[bytes, str]:
    """(body, content type) of `event` in format `fmt`."""
    if fmt == "cloudevents":
        return cloudevents_body(event), "application/cloudevents+json"
    if fmt == "slack":
        return slack_body(event, console_url), "application/json"
    return generic_body(event), "application/json"
