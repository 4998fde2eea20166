"""New Relic issues: the workflow webhook destination's default payload.

- Key: `newrelic:<id>` (the issue id, `issueId`; one issue per occurrence).
- `state` CREATED, ACTIVATED → trigger (signal time `createdAt`: when the issue began, the same
  for every notification of the issue); CLOSED → recovery of the key at `updatedAt`.
- Acknowledgement: New Relic has no ACKNOWLEDGED state; an acknowledgement arrives as
  `state: ACTIVATED` with `trigger: USER_ACTION` (the zulip/zulip capture). That, or
  `isAcknowledged: true`, `acknowledgedBy` / `acknowledgedAt` (variables a template can render),
  or `state: ACKNOWLEDGED` from a custom template → the trigger, then a source-reported
  `acknowledge` at `updatedAt` (actor: `acknowledgedBy`). The trigger comes first because the
  issue may be unknown here: a workflow that notifies only on acknowledgement, or a CREATED
  notification lost or filtered out, must still leave an incident that the acknowledgement and
  the later CLOSED apply to; for a known issue it is a re-notification (an occurrence at most).
  Other triggers on ACTIVATED (STATE_CHANGE, INCIDENT_ADDED, PRIORITY_CHANGED, …) are triggers
  alone: a re-notification with new content adds an occurrence.
- Severity: `priority` CRITICAL, HIGH → RED; MEDIUM, LOW (or anything else) → YELLOW.
- `createdAt` / `updatedAt`: epoch milliseconds as integers (never floats); `isCorrelated` a
  boolean or the string "true"/"false".
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, StrictBool

from ingest_worker.core.values import (
    EvidenceInput,
    IncidentInput,
    Recovery,
    Severity,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.times import EpochMillis
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Count32,
    Name,
    Ref,
    RequiredRef,
    Signal,
    Text,
)

NAME: Final = "newrelic"
NEWRELIC_ALERT: Final = "NEWRELIC_ALERT"
RED_PRIORITIES: Final = frozenset({"CRITICAL", "HIGH"})
ACK_TRIGGER: Final = "USER_ACTION"


class IssueState(StrEnum):
    CREATED = "CREATED"
    ACTIVATED = "ACTIVATED"
    CLOSED = "CLOSED"
    #: Not a New Relic state; accepted from custom templates that render one.
    ACKNOWLEDGED = "ACKNOWLEDGED"


def _flag(value: object) -> object:
    """`isCorrelated` is a boolean in most captures, the string "false" in one."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


Flag = Annotated[StrictBool, BeforeValidator(_flag)]
Names = Annotated[list[Name], Field(max_length=MAX_ITEMS)]


class NewRelicIssue(Signal):
    """The default payload of a New Relic workflow webhook (one issue)."""

    id: RequiredRef
    issueUrl: Text | None = None
    title: Text | None = None
    priority: Ref | None = None
    impactedEntities: Names | None = None
    totalIncidents: Count32 | None = None
    state: IssueState
    trigger: Ref | None = None
    isCorrelated: Flag | None = None
    createdAt: EpochMillis
    updatedAt: EpochMillis
    sources: Names | None = None
    alertPolicyNames: Names | None = None
    alertConditionNames: Names | None = None
    workflowName: Name | None = None
    isAcknowledged: Flag | None = None
    acknowledgedBy: Ref | None = None


def newrelic_severity(priority: str | None) -> Severity:
    return Severity.RED if (priority or "").strip().upper() in RED_PRIORITIES else Severity.YELLOW


def is_acknowledgement(issue: NewRelicIssue) -> bool:
    """The notification reports the issue acknowledged (see the module docstring)."""
    if issue.state is IssueState.ACKNOWLEDGED:
        return True
    if issue.state is not IssueState.ACTIVATED:
        return False
    return (
        issue.trigger == ACK_TRIGGER
        or issue.isAcknowledged is True
        or bool(issue.acknowledgedBy)
        or _acknowledged_at(issue) not in (None, False, "", 0)
    )


def _acknowledged_at(issue: NewRelicIssue) -> object:
    # Kept an extra field (not declared) so that declaring it adds no `null` to the payload,
    # which would change the identity of every notification without it.
    return (issue.model_extra or {}).get("acknowledgedAt")


def _correlation(issue: NewRelicIssue) -> Iterable[str]:
    for entity in issue.impactedEntities or ():
        if entity:
            yield f"entity:{entity}"
    for policy in issue.alertPolicyNames or ():
        if policy:
            yield f"policy:{policy}"
    for condition in issue.alertConditionNames or ():
        if condition:
            yield f"condition:{condition}"


def _primary(issue: NewRelicIssue, source: SignalPayload) -> EvidenceInput:
    return EvidenceInput(
        kind=NAME, ref=f"{issue.id}@sha256:{source.sha256}", payload=source.payload
    )


def map_newrelic(issue: NewRelicIssue) -> tuple[SignalEffect, ...]:
    """One issue notification → a trigger, an acknowledgement or a recovery of `newrelic:<id>`."""
    key = f"{NAME}:{issue.id}"
    source = SignalPayload.of(issue)
    if issue.state is IssueState.CLOSED:
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=issue.updatedAt,
                signal_sha256=source.sha256,
                evidence=(_primary(issue, source),),
            ),
        )
    trigger = _trigger(issue, key, source)
    if not is_acknowledgement(issue):
        return (trigger,)
    return (
        trigger,
        SourceTransition(
            incident_key=key,
            source_kind=NAME,
            verb="acknowledge",
            signal_time=issue.updatedAt,
            signal_sha256=source.sha256,
            actor=issue.acknowledgedBy or None,
            evidence=(_primary(issue, source),),
        ),
    )


def _trigger(issue: NewRelicIssue, key: str, source: SignalPayload) -> IncidentInput:
    classification: dict[str, Any] = {
        "error_code": NEWRELIC_ALERT,
        "signal_type": NAME,
        "source_severity": issue.priority or None,
        "state": issue.state.value,
        "trigger": issue.trigger,
        "is_correlated": issue.isCorrelated,
        "total_incidents": issue.totalIncidents,
        "workflow_name": issue.workflowName,
        "policy_names": list(issue.alertPolicyNames or ()),
        "condition_names": list(issue.alertConditionNames or ()),
    }
    links: list[EvidenceInput] = []
    if issue.issueUrl:
        link = {"name": "issueUrl", "url": source.payload.get("issueUrl")}
        links.append(evidence("link", f"{issue.id}#issueUrl", link, source))
    return build_incident(
        key=key,
        kind=NAME,
        severity=newrelic_severity(issue.priority),
        title=(issue.title or "").strip() or f"New Relic issue {issue.id}",
        env=None,
        classification=classification,
        source_ref=issue.id,
        signal_time=issue.createdAt,
        correlation=_correlation(issue),
        source=source,
        extra_evidence=links,
    )


SOURCE: Final = Source(
    name=NAME,
    topic="signals.newrelic",
    setting="newrelic",
    summary="New Relic issues, the default payload of a workflow webhook destination.",
    error_codes=(NEWRELIC_ALERT,),
    shapes=(
        Shape(
            "workflow_webhook",
            NewRelicIssue,
            map_newrelic,
            schema_file="newrelic-workflow-webhook.schema.json",
        ),
    ),
)
