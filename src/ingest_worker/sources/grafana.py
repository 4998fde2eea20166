"""Grafana alerting webhook notifications (`"version": "1"`).

The Alertmanager family's group shape plus `orgId`, per-alert links (`silenceURL`,
`dashboardURL`, `panelURL`, `imageURL`), `values` / `valueString` and the deprecated `title`,
`state`, `message`. Every alert is its own signal (`sources.alert_groups`): firing → incident
input, resolved → recovery. Key: `grafana:<orgId>:<fingerprint>` (the alert's own `orgId` when it
has one, else the notification's). Severity as Alertmanager: `labels.severity` critical, page,
high, error → RED, otherwise YELLOW.

- The fingerprint is required: Grafana computes it over labels it strips before sending
  (`__alert_rule_uid__`, …), so it cannot be derived; an alert without one is a rejected part
  (`unmappable`, "missing identity", when no alert of the record has one).
- Grafana 12 resolved notifications repeat `endsAt` as `startsAt` (grafana#106065): a recovery is
  keyed by the alert's identity, never by `startsAt`, and ordered by `endsAt`, so it still
  resolves the open episode.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field

from ingest_worker.core.values import SignalEffect
from ingest_worker.sources.alert_groups import (
    MAX_ALERTS,
    AlertFamily,
    AlertGroupNotification,
    AlertIdentity,
    GroupAlert,
    PartRejected,
    alerts_schema,
    map_alert_group,
)
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.signatures import GRAFANA_SIGNATURE
from ingest_worker.sources.wire import Id64, Ref

NAME: Final = "grafana"
GRAFANA_ALERT: Final = "GRAFANA_ALERT"
ERROR_CODES: Final = (GRAFANA_ALERT,)


class GrafanaAlert(GroupAlert):
    """One alert of a Grafana notification. `silenceURL`, `dashboardURL`, `panelURL`,
    `imageURL`, `values` and `valueString` are kept as they come (the URLs also as link
    evidence)."""

    orgId: Id64 | None = None
    ruleUID: Ref | None = None


GrafanaAlerts = Annotated[
    list[dict[str, Any]], Field(max_length=MAX_ALERTS), alerts_schema(GrafanaAlert)
]


class GrafanaNotification(AlertGroupNotification):
    """The body a Grafana webhook contact point POSTs (webhook-notifier.md, "Webhook JSON
    payload")."""

    version: Literal["1"]
    orgId: Id64
    alerts: GrafanaAlerts


FAMILY: Final = AlertFamily(
    kind=NAME,
    error_code=GRAFANA_ALERT,
    tool="Grafana",
    link_fields=("generatorURL", "silenceURL", "dashboardURL", "panelURL", "imageURL"),
)


def _identify(group: GrafanaNotification, alert: GrafanaAlert) -> tuple[AlertIdentity, str]:
    if not alert.fingerprint:
        raise PartRejected(
            "fingerprint: missing identity (Grafana computes the fingerprint over labels it "
            "does not send, so it cannot be derived)",
            identity=True,
        )
    org = alert.orgId if alert.orgId is not None else group.orgId
    source_ref = f"{org}:{alert.fingerprint}"
    identity = AlertIdentity(
        key=f"{NAME}:{source_ref}",
        source_ref=source_ref,
        classification={"org_id": org, "rule_uid": alert.ruleUID},
    )
    return identity, alert.fingerprint


def map_notification(group: GrafanaNotification) -> tuple[SignalEffect, ...]:
    """One effect per alert: firing → incident input, resolved → recovery, invalid → rejected
    part."""
    return map_alert_group(group, model=GrafanaAlert, family=FAMILY, identify=_identify)


SOURCE: Final = Source(
    name=NAME,
    topic="signals.grafana",
    setting="grafana",
    summary="Grafana alerting webhook notifications (version 1): one signal per alert.",
    error_codes=ERROR_CODES,
    signature=GRAFANA_SIGNATURE,
    shapes=(
        Shape(
            "webhook_v1",
            GrafanaNotification,
            map_notification,
            schema_file="grafana-webhook.schema.json",
        ),
    ),
)
