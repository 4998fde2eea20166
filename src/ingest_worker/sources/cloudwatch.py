"""AWS CloudWatch alarms: the EventBridge "CloudWatch Alarm State Change" event.

- Key: `cloudwatch:<alarm ARN>` (`resources[0]`, else `detail.alarmArn`): the ARN names account,
  region and alarm (`alarmName` alone is not unique). It repeats across occurrences: an ALARM
  after an OK reopens or opens a new episode.
- `detail.state.value` ALARM → RED trigger (CloudWatch has no severity); OK → recovery of the
  key; INSUFFICIENT_DATA → ignored (neither firing nor recovered).
- Other events of `aws.cloudwatch` — "CloudWatch Alarm Configuration Change" (an alarm created,
  updated or deleted) — are facts about configuration, not alarms: ignored. Any other
  `detail-type` or `source` (including "CloudWatch Alarm Contributor State Change", not
  supported yet) is `unmappable`: the topic carries only CloudWatch alarm events.
- Signal time: `detail.state.timestamp` (`2019-10-02T17:04:40.989+0000`, an offset without
  colon), else the envelope's `time`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import EvidenceInput, Recovery, Severity, SignalEffect
from ingest_worker.sources.building import SignalPayload, build_incident, evidence
from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.times import ToolTimestamp
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    MAX_NAME,
    Name,
    Ref,
    Signal,
    Text,
    WireModel,
)

NAME: Final = "cloudwatch"
CLOUDWATCH_ALERT: Final = "CLOUDWATCH_ALERT"
CLOUDWATCH_SOURCE: Final = "aws.cloudwatch"
STATE_CHANGE: Final = "CloudWatch Alarm State Change"
#: `aws.cloudwatch` detail-types that carry no alarm state: valid, ignored.
IGNORED_DETAIL_TYPES: Final = frozenset({"CloudWatch Alarm Configuration Change"})
#: `detail.alarmTags` names (propagated alarm tags) that become correlation keys.
CORRELATED_TAGS: Final = ("service", "env", "host")

AlarmState = Literal["ALARM", "OK", "INSUFFICIENT_DATA"]


class AlarmStateDetail(WireModel):
    value: AlarmState
    reason: Text | None = None
    reasonData: str | None = None
    timestamp: ToolTimestamp | None = None


class AlarmConfiguration(WireModel):
    description: Text | None = None
    alarmRule: Text | None = None


class AlarmDetail(WireModel):
    alarmName: Name | None = None
    alarmArn: Ref | None = None
    state: AlarmStateDetail | None = None
    previousState: AlarmStateDetail | None = None
    configuration: AlarmConfiguration | None = None
    alarmTags: Annotated[dict[Name, Text], Field(max_length=MAX_ITEMS)] | None = None


class CloudWatchAlarmEvent(Signal):
    """An EventBridge event of `aws.cloudwatch`, as AWS emits it."""

    version: Ref | None = None
    id: Ref | None = None
    detail_type: Annotated[str, StringConstraints(max_length=MAX_NAME)] = Field(alias="detail-type")
    source: Ref
    account: Ref | None = None
    time: ToolTimestamp | None = None
    region: Ref | None = None
    resources: Annotated[list[Ref], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    detail: AlarmDetail


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


def alarm_arn(event: CloudWatchAlarmEvent) -> str:
    for resource in event.resources:
        if resource.startswith("arn:") and ":alarm:" in resource:
            return resource
    if event.detail.alarmArn:
        return event.detail.alarmArn
    raise _unmappable("resources and detail.alarmArn name no alarm ARN: the alarm has no identity")


def _correlation(event: CloudWatchAlarmEvent) -> Iterable[str]:
    detail = event.detail
    if detail.alarmName:
        yield f"alarm:{detail.alarmName}"
    if event.account:
        yield f"aws_account:{event.account}"
    if event.region:
        yield f"aws_region:{event.region}"
    for name, value in (detail.alarmTags or {}).items():
        if name in CORRELATED_TAGS and value:
            yield f"{name}:{value}"


def map_cloudwatch(event: CloudWatchAlarmEvent) -> tuple[SignalEffect, ...]:
    """An alarm state change → a trigger (ALARM), a recovery (OK), or nothing."""
    if event.source != CLOUDWATCH_SOURCE:
        raise _unmappable(f"source is not {CLOUDWATCH_SOURCE}")
    if event.detail_type in IGNORED_DETAIL_TYPES:
        return ()
    if event.detail_type != STATE_CHANGE:
        raise _unmappable(f"detail-type is not {STATE_CHANGE!r} (or a configuration change)")
    state = event.detail.state
    if state is None:
        raise _unmappable("detail.state is missing: the new state cannot be told")
    if state.value == "INSUFFICIENT_DATA":
        return ()
    arn = alarm_arn(event)
    key = f"{NAME}:{arn}"
    signal_time = state.timestamp or event.time
    if signal_time is None:
        raise _unmappable("detail.state.timestamp and time are missing: the signal has no time")
    source = SignalPayload.of(event)
    if state.value == "OK":
        return (
            Recovery(
                source_kind=NAME,
                scope=key,
                signal_time=signal_time,
                signal_sha256=source.sha256,
                evidence=(
                    EvidenceInput(
                        kind=NAME, ref=f"{arn}@sha256:{source.sha256}", payload=source.payload
                    ),
                ),
            ),
        )
    detail = event.detail
    alarm = detail.alarmName or arn.rsplit(":", 1)[-1]
    description = (detail.configuration.description or "").strip() if detail.configuration else ""
    title = f"CloudWatch alarm {alarm}" + (f": {description}" if description else "")
    detail_data = source.payload["detail"]
    state_data = detail_data.get("state") or {}
    classification: dict[str, Any] = {
        "error_code": CLOUDWATCH_ALERT,
        "signal_type": NAME,
        "source_severity": None,
        "state": state.value,
        "previous_state": detail.previousState.value if detail.previousState else None,
        "alarm_name": detail.alarmName,
        "account": event.account,
        "region": event.region,
        "event_id": event.id,
        "actions_suppressed_by": state_data.get("actionsSuppressedBy"),
    }
    reason = {
        "alarmName": detail_data.get("alarmName"),
        "state": state_data,
        "previousState": detail_data.get("previousState"),
    }
    return (
        build_incident(
            key=key,
            kind=NAME,
            severity=Severity.RED,
            title=title,
            env=(detail.alarmTags or {}).get("env") or None,
            classification=classification,
            source_ref=arn,
            signal_time=signal_time,
            correlation=_correlation(event),
            source=source,
            extra_evidence=[evidence("cloudwatch_alarm_state", arn, reason, source)],
        ),
    )


SOURCE: Final = Source(
    name=NAME,
    topic="signals.cloudwatch",
    setting="cloudwatch",
    summary='AWS CloudWatch alarms: the EventBridge "CloudWatch Alarm State Change" event.',
    error_codes=(CLOUDWATCH_ALERT,),
    shapes=(
        Shape(
            "eventbridge",
            CloudWatchAlarmEvent,
            map_cloudwatch,
            schema_file="cloudwatch-alarm-state-change.schema.json",
        ),
    ),
)
