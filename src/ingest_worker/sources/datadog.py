"""Datadog monitor notifications through the webhooks integration.

Datadog has no fixed webhook body: the body is a template of `$VARIABLES` the user writes. We
publish one (the documentation's Datadog page); this module reads what it renders and tolerates other
templates as long as they carry an identity (`alert_cycle_key`, or `alert_id` with
`alert_scope`), an `alert_transition` and a `date` (or `last_updated`).

- Key: `datadog:<alert_cycle_key>`, else `datadog:<alert_id>:<alert_scope>`. Neither part may
  contain `:` except the scope (a monitor id is a number, a cycle key an opaque token), so the
  key reads back unambiguously: the scope is everything after the second `:`, and a
  cycle-key form (one `:`) never equals an id-and-scope form (two or more). An ungrouped monitor
  renders an empty scope: `datadog:<alert_id>:`.
- `alert_transition` Triggered, Warn, No Data (and their `Re-` forms, Renotify) → trigger;
  Recovered → recovery of the same key; `Null` (older pages) → ignored; anything else →
  `unmappable`.
- Severity: `alert_priority` P1 or P2, or `alert_type` error → RED; otherwise YELLOW.
- Signal time: `date` ($DATE, epoch milliseconds, integer or digit string; `last_updated`
  when `date` is absent).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, StringConstraints

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import (
    EvidenceInput,
    Recovery,
    Severity,
    SignalEffect,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.times import EpochMillis
from ingest_worker.sources.wire import MAX_REF, Name, Ref, Signal, Text, WireModel

NAME: Final = "datadog"
DATADOG_ALERT: Final = "DATADOG_ALERT"

#: `alert_transition` values (case-insensitive, a `Re-` prefix stripped) that fire an alert.
TRIGGER_TRANSITIONS: Final = frozenset({"triggered", "warn", "no data", "renotify"})
RECOVERED: Final = "recovered"
IGNORED_TRANSITIONS: Final = frozenset({"null"})
RED_PRIORITIES: Final = frozenset({"P1", "P2"})
RED_ALERT_TYPES: Final = frozenset({"error"})
#: Tags of `alert_scope` / `tags` that become correlation keys of the same name.
CORRELATED_TAGS: Final = ("service", "env", "host")


def _text_of_number(value: object) -> object:
    """Datadog ids arrive as strings in a quoted template, as numbers in an unquoted one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: An id without `:` (monitor ids are numbers, cycle keys opaque tokens), string or integer.
KeyPart = Annotated[
    str,
    BeforeValidator(_text_of_number),
    StringConstraints(max_length=MAX_REF, pattern=r"^[^:]*$"),
]
IdText = Annotated[str, BeforeValidator(_text_of_number), StringConstraints(max_length=MAX_REF)]


class DatadogOrg(WireModel):
    id: IdText | None = None
    name: Name | None = None


class DatadogWebhook(Signal):
    """The body our recommended Datadog webhook template renders (every field optional here:
    templates differ; the mapper refuses a body without identity, transition or date)."""

    id: IdText | None = None
    title: Text | None = None
    date: EpochMillis | None = None
    last_updated: EpochMillis | None = None
    event_type: Ref | None = None
    alert_id: KeyPart | None = None
    alert_cycle_key: KeyPart | None = None
    alert_scope: Ref | None = None
    alert_transition: Ref | None = None
    alert_type: Ref | None = None
    alert_priority: Ref | None = None
    alert_title: Text | None = None
    alert_status: Text | None = None
    alert_metric: Ref | None = None
    hostname: Ref | None = None
    tags: Text | None = None
    link: Text | None = None
    org: DatadogOrg | None = None


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


def _transition(value: str) -> str:
    text = value.strip().lower()
    return text[3:] if text.startswith("re-") else text


def datadog_key(signal: DatadogWebhook) -> str:
    """`datadog:<alert_cycle_key>`, else `datadog:<alert_id>:<alert_scope>`."""
    if signal.alert_cycle_key:
        return f"{NAME}:{signal.alert_cycle_key}"
    if signal.alert_id:
        return f"{NAME}:{signal.alert_id}:{(signal.alert_scope or '').strip()}"
    raise _unmappable(
        "alert_cycle_key and alert_id are missing: the webhook body carries no alert identity "
        "(use the recommended template, see the Datadog page of the documentation)"
    )


def datadog_severity(signal: DatadogWebhook) -> Severity:
    priority = (signal.alert_priority or "").strip().upper()
    alert_type = (signal.alert_type or "").strip().lower()
    if priority in RED_PRIORITIES or alert_type in RED_ALERT_TYPES:
        return Severity.RED
    return Severity.YELLOW


def _tags(*lists: str | None) -> dict[str, str]:
    """`name:value` tags of comma-separated lists, first occurrence wins."""
    found: dict[str, str] = {}
    for text in lists:
        for tag in (text or "").split(","):
            name, sep, value = tag.strip().partition(":")
            if sep and name in CORRELATED_TAGS and value.strip():
                found.setdefault(name, value.strip())
    return found


def _correlation(signal: DatadogWebhook, tags: dict[str, str]) -> Iterable[str]:
    if signal.alert_id:
        yield f"monitor:{signal.alert_id}"
    hostname = (signal.hostname or "").strip()
    if hostname:
        yield f"host:{hostname}"
    for name, value in tags.items():
        if not (name == "host" and hostname):
            yield f"{name}:{value}"


def _primary(source_ref: str, source: SignalPayload) -> EvidenceInput:
    return EvidenceInput(
        kind=NAME, ref=f"{source_ref}@sha256:{source.sha256}", payload=source.payload
    )


def map_datadog(signal: DatadogWebhook) -> tuple[SignalEffect, ...]:
    """A rendered notification → a trigger, a recovery of its key, or nothing."""
    key = datadog_key(signal)
    if not signal.alert_transition:
        raise _unmappable("alert_transition is missing: the transition cannot be told")
    transition = _transition(signal.alert_transition)
    if transition in IGNORED_TRANSITIONS:
        return ()
    if transition != RECOVERED and transition not in TRIGGER_TRANSITIONS:
        raise _unmappable(
            "alert_transition is none of Triggered, Re-Triggered, Warn, Re-Warn, No Data, "
            "Re-No Data, Renotify, Recovered, Null"
        )
    source_ref = key.removeprefix(f"{NAME}:")
    signal_time: datetime | None = signal.date or signal.last_updated
    if signal_time is None:
        raise _unmappable("date and last_updated are missing: the signal has no time")
    source = SignalPayload.of(signal)
    if transition == RECOVERED:
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=signal_time,
                signal_sha256=source.sha256,
                evidence=(_primary(source_ref, source),),
            ),
        )
    severity = datadog_severity(signal)
    tags = _tags(signal.alert_scope, signal.tags)
    title = (signal.alert_title or "").strip() or (signal.title or "").strip()
    if not title:
        title = f"Datadog monitor {signal.alert_id or source_ref}"
    classification: dict[str, Any] = {
        "error_code": DATADOG_ALERT,
        "signal_type": NAME,
        "source_severity": (signal.alert_priority or "").strip() or signal.alert_type or None,
        "alert_priority": signal.alert_priority or None,
        "alert_type": signal.alert_type or None,
        "alert_transition": signal.alert_transition,
        "alert_id": signal.alert_id or None,
        "alert_scope": signal.alert_scope or None,
        "alert_metric": signal.alert_metric or None,
        "event_type": signal.event_type or None,
        "event_id": signal.id or None,
    }
    links: list[EvidenceInput] = []
    if signal.link:
        link = {"name": "link", "url": source.payload.get("link")}
        links.append(evidence("link", f"{source_ref}#link", link, source))
    return (
        build_incident(
            key=key,
            kind=NAME,
            severity=severity,
            title=title,
            env=tags.get("env"),
            classification=classification,
            source_ref=source_ref,
            signal_time=signal_time,
            correlation=_correlation(signal, tags),
            source=source,
            extra_evidence=links,
        ),
    )


SOURCE: Final = Source(
    name=NAME,
    topic="signals.datadog",
    setting="datadog",
    summary="Datadog monitor notifications, the webhook body of the recommended template (see the documentation's Datadog page).",
    error_codes=(DATADOG_ALERT,),
    shapes=(
        Shape("webhook", DatadogWebhook, map_datadog, schema_file="datadog-webhook.schema.json"),
    ),
)
