"""Alert group notifications (Alertmanager webhook v4, Grafana alerting webhook v1): shared parts.

Not a source: `alertmanager` and `grafana` build on it (a source module may not import another).

A notification carries a whole group of alerts, firing and resolved mixed, and is resent every
`repeat_interval` (and twice in HA setups). Rules:

- Every alert is its own signal. Its identity (`signal_sha256`) is the canonical sha256 of the
  alert object alone, never of the notification: the same alert re-sent in another group
  composition, to another receiver or by another HA replica is a duplicate (one alert, one
  identity).
  For the same reason everything an effect carries (classification, evidence) comes from the
  alert alone (and, for Grafana, the orgId in its key): group fields such as `receiver` or
  `externalURL` would make the stored incident depend on which copy arrived first. A firing
  alert's `endsAt` is read as not ended: old Alertmanagers send a forecast there (now +
  `resolve_timeout`) that moves on every re-notification; current ones send the zero time.
- firing → an `IncidentInput`, signal time `startsAt`; resolved → a `Recovery` of the alert's
  incident key (its scope), signal time `endsAt`. A resolved alert without `endsAt` (or with the
  zero time `0001-01-01T00:00:00Z`, which means "not ended") is a rejected part: there is no
  clock in a mapper, and the end is the time the recovery is ordered by. A firing alert without
  `startsAt`, or with the zero time (Grafana's test notifications send it), takes the
  notification's time: when its record was received (`wire.RECORD_TIME`), never year 1.
- Title: the first non-blank of `annotations.summary`, `annotations.title`,
  `annotations.description`, then `labels.alertname`.
- The envelope is validated strictly (a wrong shape or more than `MAX_ALERTS` alerts rejects the
  whole record: `schema_violation`); the alerts one by one: an invalid alert becomes a
  `RejectedPart` (its index and a message without input values) and the valid ones are applied.
  The pipeline then dead-letters the record as `partially_invalid`; a record with no valid alert
  is `schema_violation` (`unmappable` when every alert lacks its identity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.redaction import identifier_holds_credential, redact_text
from ingest_worker.core.values import (
    EvidenceInput,
    IncidentInput,
    Recovery,
    RejectedPart,
    Severity,
    SignalEffect,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.times import OptionalEnd, OptionalStart
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_REF,
    RECORD_TIME,
    Count32,
    Signal,
    Text,
    WireModel,
)

#: Alerts per record; a notification with more is refused whole (`schema_violation`).
MAX_ALERTS: Final = MAX_ITEMS
#: `labels.severity` values (any case) that make an incident RED; every other value, or none, YELLOW.
RED_SEVERITIES: Final = frozenset({"critical", "page", "high", "error"})
#: Annotations read for the title, in order (then `labels.alertname`).
TITLE_ANNOTATIONS: Final = ("summary", "title", "description")
#: Labels that become correlation keys `<prefix>:<value>` (first label present wins per prefix).
CORRELATION_LABELS: Final = (
    ("alertname", ("alertname",)),
    ("service", ("service",)),
    ("env", ("env", "environment")),
    ("cluster", ("cluster",)),
    ("namespace", ("namespace",)),
    ("job", ("job",)),
)
_MAX_MESSAGE: Final = 1000

LabelName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Labels = Annotated[dict[LabelName, Text], Field(max_length=MAX_ITEMS)]
Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REF)]
AlertStatus = Literal["firing", "resolved"]


class GroupAlert(WireModel):
    """One alert of a notification (the fields Alertmanager and Grafana share)."""

    status: AlertStatus
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: OptionalStart = None
    endsAt: OptionalEnd = None
    generatorURL: Text | None = None
    fingerprint: Fingerprint | None = None


class AlertGroupNotification(Signal):
    """The envelope both tools send. `alerts` are validated one by one by the mapper."""

    status: AlertStatus
    receiver: Text
    groupKey: Text
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: Text | None = None
    truncatedAlerts: Count32 | None = None
    alerts: Annotated[list[dict[str, Any]], Field(max_length=MAX_ALERTS)]

    _received_at: datetime | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _record_time(self, info: ValidationInfo) -> AlertGroupNotification:
        context = info.context
        if isinstance(context, dict):
            self._received_at = context.get(RECORD_TIME)
        return self

    @property
    def received_at(self) -> datetime | None:
        """When the notification was received (its record's time); None when validated outside
        record decoding."""
        return self._received_at


def alerts_schema(model: type[WireModel]) -> WithJsonSchema:
    """The published JSON Schema of `alerts`: at most `MAX_ALERTS` objects of `model`."""
    return WithJsonSchema(
        {
            "type": "array",
            "maxItems": MAX_ALERTS,
            "items": model.model_json_schema(mode="validation"),
            "description": (
                "Each alert is validated on its own: an invalid alert is reported (the record "
                "is dead-lettered as partially_invalid) while the valid ones are applied."
            ),
        }
    )


class PartRejected(Exception):
    """One alert cannot be mapped; `message` names fields, never values."""

    def __init__(self, message: str, *, identity: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.identity = identity


@dataclass(frozen=True, slots=True)
class AlertIdentity:
    """What a source derives from one alert: its incident key, source ref and extra
    classification fields."""

    key: str
    source_ref: str
    classification: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AlertFamily:
    """The per-source constants of a group mapping."""

    kind: str  # the source name (incident source_kind)
    error_code: str
    tool: str  # human name for titles: "Alertmanager", "Grafana"
    link_fields: tuple[str, ...]  # alert fields kept as link evidence


A = TypeVar("A", bound=GroupAlert)
G = TypeVar("G", bound=AlertGroupNotification)


def severity_of(labels: Mapping[str, str]) -> Severity:
    """RED for `labels.severity` critical, page, high or error (any case), else YELLOW."""
    level = labels.get("severity")
    return (
        Severity.RED if level is not None and level.lower() in RED_SEVERITIES else Severity.YELLOW
    )


def correlation_keys(labels: Mapping[str, str]) -> list[str]:
    """`alertname:`, `service:`, `env:`, `cluster:`, `namespace:`, `job:` from the labels that
    have them (non-empty values up to 512 characters)."""
    keys = []
    for prefix, names in CORRELATION_LABELS:
        for name in names:
            value = labels.get(name)
            if value and len(value) <= MAX_REF:
                keys.append(f"{prefix}:{value}")
                break
    return keys


def env_of(labels: Mapping[str, str]) -> str | None:
    for name in ("env", "environment"):
        value = labels.get(name)
        if value and len(value) <= MAX_REF:
            return value
    return None


def title_of(alert: GroupAlert, family: AlertFamily, fingerprint: str) -> str:
    """The first non-blank of `annotations.summary`, `.title`, `.description`, then the
    alertname."""
    annotations = alert.annotations
    for text in (
        *(annotations.get(name) for name in TITLE_ANNOTATIONS),
        alert.labels.get("alertname"),
    ):
        if text and text.strip():
            return text.strip()
    return f"{family.tool} alert {fingerprint}"


def alert_effect(
    family: AlertFamily,
    alert: GroupAlert,
    identity: AlertIdentity,
    fingerprint: str,
    received_at: datetime | None = None,
) -> IncidentInput | Recovery:
    """A firing alert's incident input or a resolved alert's recovery. `received_at` is the
    notification's time, the signal time of a firing alert without a start time."""
    if alert.status == "firing" and alert.endsAt is not None:
        # A forecast, not a fact (Alertmanager before 0.16 sends now + resolve_timeout and
        # moves it on every notification): kept out of the identity, as current versions do.
        alert = alert.model_copy(update={"endsAt": None})
    source = SignalPayload.of(alert)
    primary = EvidenceInput(
        kind=family.kind,
        ref=f"{identity.source_ref}@sha256:{source.sha256}",
        payload=source.payload,
    )
    if alert.status == "resolved":
        if alert.endsAt is None:
            raise PartRejected(
                "endsAt: a resolved alert needs its end time (0001-01-01T00:00:00Z means not ended)"
            )
        return Recovery(
            source_kind=family.kind,
            scope=identity.key,
            signal_time=alert.endsAt,
            signal_sha256=source.sha256,
            evidence=(primary,),
        )
    data = source.payload
    links = {name: data[name] for name in family.link_fields if data.get(name)}
    extra = []
    if links:
        extra.append(
            evidence(f"{family.kind}_links", f"{identity.source_ref}:links", links, source)
        )
    labels = alert.labels
    classification: dict[str, Any] = {
        "error_code": family.error_code,
        "signal_type": family.kind,
        "source_severity": labels.get("severity"),
        "alertname": labels.get("alertname"),
        "status": alert.status,
        "fingerprint": fingerprint,
        **identity.classification,
        "labels": dict(labels),
    }
    return build_incident(
        key=identity.key,
        kind=family.kind,
        severity=severity_of(labels),
        title=title_of(alert, family, fingerprint),
        env=env_of(labels),
        classification=classification,
        source_ref=identity.source_ref,
        signal_time=_start(alert, received_at),
        correlation=correlation_keys(labels),
        source=source,
        extra_evidence=extra,
    )


def _start(alert: GroupAlert, received_at: datetime | None) -> datetime:
    if alert.startsAt is not None:
        return alert.startsAt
    if received_at is None:
        raise PartRejected(
            "startsAt: a firing alert without a start time needs the notification's time, "
            "and none was given"
        )
    return received_at


def map_alert_group(
    group: G,
    *,
    model: type[A],
    family: AlertFamily,
    identify: Callable[[G, A], tuple[AlertIdentity, str]],
) -> tuple[SignalEffect, ...]:
    """Every alert of `group` as its own effect, invalid ones as `RejectedPart`.

    `identify` gives an alert's identity and fingerprint, or raises `PartRejected`.
    """
    effects: list[SignalEffect] = []
    identity_rejections = 0
    for index, raw in enumerate(group.alerts):
        try:
            alert = model.model_validate(raw)
            identity, fingerprint = identify(group, alert)
            effect = alert_effect(family, alert, identity, fingerprint, group.received_at)
            if _holds_credential(effect):
                raise PartRejected(
                    "an identifier (fingerprint, labels used as keys) holds a value that looks "
                    "like a credential; identifiers are stored and published, so it is refused"
                )
        except ValidationError as exc:
            effects.append(RejectedPart(index, _describe(index, exc)))
            continue
        except PartRejected as exc:
            identity_rejections += exc.identity
            effects.append(RejectedPart(index, redact_text(f"alerts.{index}.{exc.message}")))
            continue
        effects.append(effect)
    if effects and identity_rejections == len(effects):
        raise InvalidSignal(RejectReason.UNMAPPABLE, _bounded(_parts_text(effects)))
    return tuple(effects)


def _holds_credential(effect: IncidentInput | Recovery) -> bool:
    parts: list[str]
    if isinstance(effect, IncidentInput):
        parts = [effect.incident_key, effect.source_primary.ref, *effect.correlation_keys]
        if effect.env is not None:
            parts.append(effect.env)
    else:
        parts = [effect.scope]
    parts.extend(e.ref for e in effect.evidence)
    return any(identifier_holds_credential(part) for part in parts)


def _describe(index: int, exc: ValidationError) -> str:
    """`alerts.<i>.field: what is wrong; …` without input values (label names redacted)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = [
        ".".join(["alerts", str(index), *(str(item) for item in error["loc"])])
        + f": {error['msg']}"
        for error in errors
    ]
    return _bounded(redact_text("; ".join(parts)))


def _parts_text(effects: Iterable[SignalEffect]) -> str:
    parts = [item for item in effects if isinstance(item, RejectedPart)]
    text = "; ".join(f"part {p.index}: {p.message}" for p in parts)
    return f"no alert of the notification has an identity: {text}"


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
