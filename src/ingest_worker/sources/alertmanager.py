"""Prometheus Alertmanager webhook notifications (`"version": "4"`).

Every alert of the group is its own signal (`sources.alert_groups`): firing → an incident input,
resolved → a recovery of its key. Key: `alertmanager:<fingerprint>`. Severity: `labels.severity`
critical, page, high or error (any case) → RED, anything else or none → YELLOW.

Alerts without `fingerprint` (Alertmanager before 0.16, and hand-written payloads): the
fingerprint is computed from the labels exactly as Alertmanager does (prometheus/common
`model.LabelSet.Fingerprint`: FNV-1a 64 over the label names in sorted order, each name and
value followed by the byte 0xff, rendered as 16 lower-case hex digits), so an old and a new
Alertmanager give the same key for the same label set; `classification.fingerprint_from` says
`labels` then, `alertmanager` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Field

from ingest_worker.core.values import SignalEffect
from ingest_worker.sources.alert_groups import (
    MAX_ALERTS,
    AlertFamily,
    AlertGroupNotification,
    AlertIdentity,
    GroupAlert,
    alerts_schema,
    map_alert_group,
)
from ingest_worker.sources.contract import Shape, Source

NAME: Final = "alertmanager"
ALERTMANAGER_ALERT: Final = "ALERTMANAGER_ALERT"
ERROR_CODES: Final = (ALERTMANAGER_ALERT,)

_FNV_OFFSET: Final = 14695981039346656037
_FNV_PRIME: Final = 1099511628211
_MASK64: Final = (1 << 64) - 1
_SEPARATOR: Final = 0xFF


class AlertmanagerAlert(GroupAlert):
    """One alert: `status`, `labels`, `annotations`, `startsAt`, `endsAt` (the zero time means not
    ended), `generatorURL`, `fingerprint` (absent before Alertmanager 0.16)."""


AlertmanagerAlerts = Annotated[
    list[dict[str, Any]], Field(max_length=MAX_ALERTS), alerts_schema(AlertmanagerAlert)
]


class AlertmanagerNotification(AlertGroupNotification):
    """The body Alertmanager's webhook receiver POSTs (docs/configuration.md `<webhook_config>`)."""

    version: Literal["4"]
    alerts: AlertmanagerAlerts


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (prometheus/common `labelSetToFingerprint`)."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                value = ((value ^ byte) * _FNV_PRIME) & _MASK64
            value = ((value ^ _SEPARATOR) * _FNV_PRIME) & _MASK64
    return f"{value:016x}"


FAMILY: Final = AlertFamily(
    kind=NAME, error_code=ALERTMANAGER_ALERT, tool="Alertmanager", link_fields=("generatorURL",)
)


def _identify(
    group: AlertmanagerNotification, alert: AlertmanagerAlert
) -> tuple[AlertIdentity, str]:
    fingerprint = alert.fingerprint or label_fingerprint(alert.labels)
    origin = "alertmanager" if alert.fingerprint else "labels"
    identity = AlertIdentity(
        key=f"{NAME}:{fingerprint}",
        source_ref=fingerprint,
        classification={"fingerprint_from": origin},
    )
    return identity, fingerprint


def map_notification(group: AlertmanagerNotification) -> tuple[SignalEffect, ...]:
    """One effect per alert: firing → incident input, resolved → recovery, invalid → rejected
    part."""
    return map_alert_group(group, model=AlertmanagerAlert, family=FAMILY, identify=_identify)


SOURCE: Final = Source(
    name=NAME,
    topic="signals.alertmanager",
    setting="alertmanager",
    summary="Prometheus Alertmanager webhook notifications (version 4): one signal per alert.",
    error_codes=ERROR_CODES,
    shapes=(
        Shape(
            "webhook_v4",
            AlertmanagerNotification,
            map_notification,
            schema_file="alertmanager-webhook.schema.json",
        ),
    ),
)
