"""Opsgenie alerts: the alert action data of Opsgenie's outgoing webhook integration.

- Key: `opsgenie:<alert.alias>`, else `opsgenie:<alert.alertId>` (an empty alias counts as
  missing). The alias repeats across occurrences (Opsgenie keeps one *open* alert per alias):
  a Create after a Close opens a new episode.
- `action` Create → trigger at `alert.createdAt` (epoch ms); Close → recovery of the key;
  Acknowledge, UnAcknowledge, AddNote → source-reported `acknowledge`, `unacknowledge`,
  `annotate` (note: `alert.note`, redacted, at most 5000 characters kept), actor
  `alert.username` (the user who acted). Those use `alert.updatedAt` (epoch ns). Other actions
  (Delete, AddTags, Escalate, TakeOwnership, custom actions, …) → ignored.
- Severity: `alert.priority` P1, P2 → RED; P3–P5 or absent (Opsgenie's default is P3) →
  YELLOW. The priority is a string `P1`…`P5` or an integer 1…5 (a real capture sends `3`).
- Epoch values are integers (or digit strings), never floats: 19-digit nanoseconds exceed 2^53.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import (
    EvidenceInput,
    Recovery,
    Severity,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.building import SignalPayload, build_incident
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.times import EpochMillis, EpochNanos
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    MAX_TEXT,
    Name,
    Ref,
    RequiredRef,
    Signal,
    Text,
    WireModel,
)

NAME: Final = "opsgenie"
OPSGENIE_ALERT: Final = "OPSGENIE_ALERT"
RED_PRIORITIES: Final = frozenset({"P1", "P2"})
#: Opsgenie limits a note to 25,000 characters; the transition keeps the first 5,000.
MAX_NOTE: Final = 25_000
TRANSITIONS: Final = {
    "Acknowledge": "acknowledge",
    "UnAcknowledge": "unacknowledge",
    "AddNote": "annotate",
}
#: Tags of the form `name:value` that become correlation keys of the same name.
CORRELATED_TAGS: Final = ("service", "env", "host")


def _priority(value: object) -> object:
    """`P1`…`P5` in any case, or the integer 1…5 of some payloads, as `P<n>`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"P{value}"
    if isinstance(value, str):
        return value.strip().upper()
    return value


Priority = Annotated[Literal["P1", "P2", "P3", "P4", "P5"], BeforeValidator(_priority)]
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE)]


class OpsgenieAlert(WireModel):
    """`alert` of the action data (typed where the mapping reads it)."""

    alertId: Ref | None = None
    alias: Ref | None = None
    tinyId: Ref | None = None
    message: Text | None = None
    description: Note | None = None
    username: Ref | None = None
    userId: Ref | None = None
    entity: Ref | None = None
    source: Ref | None = None
    tags: Annotated[list[Name], Field(max_length=MAX_ITEMS)] | None = None
    priority: Priority | None = None
    createdAt: EpochMillis | None = None
    updatedAt: EpochNanos | None = None
    note: Note | None = None


class OpsgenieSource(WireModel):
    name: Ref | None = None
    type: Ref | None = None


class OpsgenieWebhook(Signal):
    """Opsgenie's alert action data, as its Webhook integration posts it."""

    action: RequiredRef
    alert: OpsgenieAlert
    source: OpsgenieSource | None = None
    integrationId: Ref | None = None
    integrationName: Name | None = None
    integrationType: Ref | None = None


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


def opsgenie_severity(priority: str | None) -> Severity:
    return Severity.RED if priority in RED_PRIORITIES else Severity.YELLOW


def _identity(alert: OpsgenieAlert) -> str:
    identity = alert.alias or alert.alertId
    if not identity:
        raise _unmappable("alert.alias and alert.alertId are missing: the alert has no identity")
    return identity


def _time(first: datetime | None, second: datetime | None, names: str) -> datetime:
    moment = first or second
    if moment is None:
        raise _unmappable(f"{names} are missing: the signal has no time")
    return moment


def _correlation(alert: OpsgenieAlert) -> Iterable[str]:
    if alert.entity:
        yield f"entity:{alert.entity}"
    for tag in alert.tags or ():
        name, sep, value = tag.partition(":")
        if sep and name.strip() in CORRELATED_TAGS and value.strip():
            yield f"{name.strip()}:{value.strip()}"


def map_opsgenie(event: OpsgenieWebhook) -> tuple[SignalEffect, ...]:
    """One alert action → a trigger, a recovery, a source transition, or nothing."""
    action = event.action
    if action != "Create" and action != "Close" and action not in TRANSITIONS:
        return ()
    alert = event.alert
    identity = _identity(alert)
    key = f"{NAME}:{identity}"
    source = SignalPayload.of(event)
    primary = EvidenceInput(
        kind=NAME, ref=f"{identity}@sha256:{source.sha256}", payload=source.payload
    )
    if action == "Create":
        classification: dict[str, Any] = {
            "error_code": OPSGENIE_ALERT,
            "signal_type": NAME,
            "source_severity": alert.priority,
            "alert_id": alert.alertId,
            "alias": alert.alias or None,
            "tiny_id": alert.tinyId,
            "entity": alert.entity or None,
            "tags": list(alert.tags or ()),
            "integration_name": event.integrationName,
        }
        title = (alert.message or "").strip() or f"Opsgenie alert {alert.tinyId or identity}"
        return (
            build_incident(
                key=key,
                kind=NAME,
                severity=opsgenie_severity(alert.priority),
                title=title,
                env=None,
                classification=classification,
                source_ref=identity,
                signal_time=_time(
                    alert.createdAt, alert.updatedAt, "alert.createdAt and alert.updatedAt"
                ),
                correlation=_correlation(alert),
                source=source,
            ),
        )
    signal_time = _time(alert.updatedAt, alert.createdAt, "alert.updatedAt and alert.createdAt")
    if action == "Close":
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=signal_time,
                signal_sha256=source.sha256,
                evidence=(primary,),
            ),
        )
    verb = TRANSITIONS[action]
    note = source.text(alert.note) if verb == "annotate" else None
    if note is not None and len(note) > MAX_TEXT:
        note = note[: MAX_TEXT - 1] + "…"
    return (
        SourceTransition(
            incident_key=key,
            source_kind=NAME,
            verb=verb,
            signal_time=signal_time,
            signal_sha256=source.sha256,
            actor=alert.username or None,
            note=note,
            evidence=(primary,),
        ),
    )


SOURCE: Final = Source(
    name=NAME,
    topic="signals.opsgenie",
    setting="opsgenie",
    summary="Opsgenie alert actions, as the outgoing Webhook integration posts them.",
    error_codes=(OPSGENIE_ALERT,),
    shapes=(
        Shape("webhook", OpsgenieWebhook, map_opsgenie, schema_file="opsgenie-webhook.schema.json"),
    ),
)
