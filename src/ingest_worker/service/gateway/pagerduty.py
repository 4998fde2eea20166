"""PagerDuty Events API v2 (`POST /v2/enqueue`): the request rules of PagerDuty's own API.

Checked here so that a sender gets PagerDuty's answer (`400 invalid event` with `errors`) for
what PagerDuty would refuse; the record then goes through the `pagerduty` source's own decoding,
as the worker will read it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ingest_worker.sources.decode import describe_validation_error

TRIGGER_SEVERITIES = frozenset({"critical", "error", "warning", "info"})


class EventPayload(BaseModel):
    """`summary`, `source` and `severity` are required for a trigger only (`Event`): PagerDuty
    does not read the payload of an acknowledge or resolve, which senders may still send."""

    model_config = ConfigDict(extra="allow")

    summary: str | None = Field(default=None, max_length=1024)
    source: str | None = Field(default=None, max_length=255)
    severity: str | None = Field(
        default=None, description="critical, error, warning or info (required for a trigger)"
    )
    timestamp: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: Any = None


class Event(BaseModel):
    """An Events API v2 event. `routing_key` is the integration key: a credential."""

    model_config = ConfigDict(extra="allow")

    routing_key: str | None = Field(default=None, max_length=255)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: EventPayload | None = None
    client: str | None = None
    client_url: str | None = None
    links: list[Any] | None = None
    images: list[Any] | None = None

    @model_validator(mode="after")
    def _action_needs(self) -> Event:
        if self.event_action == "trigger":
            _trigger_payload(self.payload)
        if self.event_action != "trigger" and self.dedup_key is None:
            raise ValueError(f"dedup_key is required for an {self.event_action} event")
        return self


def _trigger_payload(payload: EventPayload | None) -> None:
    if payload is None:
        raise ValueError("payload is required for a trigger event")
    missing = [name for name in ("summary", "source") if not getattr(payload, name)]
    if missing:
        raise ValueError(f"payload.{', payload.'.join(missing)} required for a trigger event")
    if payload.severity not in TRIGGER_SEVERITIES:
        raise ValueError(
            "payload.severity must be critical, error, warning or info for a trigger event"
        )


class InvalidEvent(Exception):
    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


def validate_event(data: Any) -> Event:
    if not isinstance(data, dict):
        raise InvalidEvent("Event object is invalid", ["the event must be a JSON object"])
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        errors = [
            f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidEvent(describe_validation_error(exc)[:1000], errors[:20]) from None


def completed(data: dict[str, Any], event: Event, now: datetime | None = None) -> dict[str, Any]:
    """The record to produce: the event as sent, plus what PagerDuty adds on receipt.

    - a trigger without `dedup_key` gets a new UUID (PagerDuty does the same), returned to the
      sender;
    - acknowledge and resolve events carry no time, nor does a trigger without
      `payload.timestamp`: `received_at` (RFC 3339, UTC) is added, the time of the request.
      A trigger with its own timestamp is left as sent, so that a retry is the same signal.
    """
    record = dict(data)
    if event.dedup_key is None:
        record["dedup_key"] = str(uuid.uuid4())
    if event.event_action != "trigger" or event.payload is None or not event.payload.timestamp:
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        record["received_at"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return record
