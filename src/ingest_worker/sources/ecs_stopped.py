"""Stopped ECS tasks: the documented signal (the `seed` shape) and AWS EventBridge's "ECS Task
State Change".

Every stopped task is an incident: RED when it failed (non-zero exit code, or a stoppedReason
with error, fail or crash), YELLOW otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import Field, StringConstraints

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Severity
from ingest_worker.sources.building import (
    SignalPayload,
    build_incident,
    evidence,
    extra_text,
    key_time,
    pick,
)
from ingest_worker.sources.contract import Shape, Source, one
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    MAX_NAME,
    ExitCode,
    Name,
    Ref,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
    WireModel,
)

NAME: Final = "ecs_stopped"
ECS_TASK_STOPPED: Final = "ECS_TASK_STOPPED"
ECS_TASK_FAILED: Final = "ECS_TASK_FAILED"
ERROR_CODES: Final = (ECS_TASK_STOPPED, ECS_TASK_FAILED)

#: A stoppedReason containing one of these words (any case) means the task failed.
ECS_FAILURE_WORDS: Final = ("error", "fail", "crash")


ECS_DETAIL_TYPE: Final = "ECS Task State Change"
ECS_SOURCE: Final = "aws.ecs"

#: `stopCode`s for a task stopped from outside (a user, the service scheduler, a Spot reclaim): the
#: containers' exit codes (143, 137 after SIGTERM / SIGKILL) are consequences, not the cause.
EXTERNAL_STOP_CODES: Final = frozenset(
    {"UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"}
)


class StoppedContainer(WireModel):
    name: Name
    exitCode: ExitCode | None = None
    reason: Text | None = None


class EcsStoppedTaskSignal(Signal):
    """A stopped ECS task, already flattened by the producer."""

    cluster: RequiredRef
    taskArn: RequiredRef
    taskDefinition: Ref | None = None
    stoppedAt: Timestamp
    stoppedReason: Text | None = None
    exitCode: ExitCode | None = None
    lastStatus: Ref | None = None
    containers: Annotated[list[StoppedContainer], Field(max_length=MAX_ITEMS)] | None = None


class EcsContainer(WireModel):
    """One container of an ECS task, as in the `detail.containers` of the EventBridge event."""

    containerArn: Ref | None = None
    name: Name
    exitCode: ExitCode | None = None
    reason: Text | None = None
    lastStatus: Ref | None = None


class EcsTaskDetail(WireModel):
    """`detail` of "ECS Task State Change": the ECS Task object (typed where mapping reads it)."""

    clusterArn: Ref | None = None
    taskArn: Ref | None = None
    taskDefinitionArn: Ref | None = None
    lastStatus: Ref | None = None
    desiredStatus: Ref | None = None
    stoppedAt: Timestamp | None = None
    stoppedReason: Text | None = None
    stopCode: Ref | None = None
    containers: Annotated[list[EcsContainer], Field(max_length=MAX_ITEMS)] = Field(
        default_factory=list
    )
    group: Ref | None = None


class EcsTaskStateChangeEvent(Signal):
    """The Amazon EventBridge "ECS Task State Change" event, as AWS emits it (source `aws.ecs`).

    Only `detail.lastStatus` STOPPED creates an incident; other states are ignored.
    """

    version: Ref
    id: RequiredRef
    detail_type: Annotated[str, StringConstraints(max_length=MAX_NAME)] = Field(alias="detail-type")
    source: Ref
    account: Ref
    time: Timestamp
    region: Ref
    resources: Annotated[list[Ref], Field(max_length=MAX_ITEMS)]
    detail: EcsTaskDetail


def ecs_severity(exit_code: int | None, stopped_reason: str | None) -> Severity:
    """RED when the exit code is non-zero (absent or null is not non-zero) or the
    stoppedReason contains error, fail or crash in any case; YELLOW otherwise."""
    if exit_code is not None and exit_code != 0:
        return Severity.RED
    reason = (stopped_reason or "").lower()
    if any(word in reason for word in ECS_FAILURE_WORDS):
        return Severity.RED
    return Severity.YELLOW


def ecs_error_code(severity: Severity) -> str:
    return ECS_TASK_FAILED if severity is Severity.RED else ECS_TASK_STOPPED


def ecs_title(cluster: str, task_arn: str, exit_code: int | None) -> str:
    task_id = task_arn.rsplit("/", 1)[-1] or task_arn
    title = f"ECS task stopped in {cluster}: {task_id}"
    if exit_code:
        title += f" (exit code {exit_code})"
    return title


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


def map_ecs_stopped_task(signal: EcsStoppedTaskSignal) -> IncidentInput:
    """Every stopped task is an incident: RED (`ECS_TASK_FAILED`) or YELLOW (`ECS_TASK_STOPPED`).

    Key: `ecs_stopped:<cluster>:<taskArn>:<stoppedAt>`.
    """
    severity = ecs_severity(signal.exitCode, signal.stoppedReason)
    code = ecs_error_code(severity)
    source = SignalPayload.of(signal)
    data = source.payload
    deploy_id = extra_text(signal, "deployId")
    env = extra_text(signal, "env")
    correlation = [f"ecs_cluster:{signal.cluster}", f"ecs_task:{signal.taskArn}"]
    if signal.taskDefinition:
        correlation.append(f"ecs_task_definition:{signal.taskDefinition}")
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    if env:
        correlation.append(f"env:{env}")
    containers = pick(
        data, "taskArn", "taskDefinition", "lastStatus", "stoppedReason", "exitCode", "containers"
    )
    return build_incident(
        key=f"ecs_stopped:{signal.cluster}:{signal.taskArn}:{key_time(signal.stoppedAt)}",
        kind=NAME,
        severity=severity,
        title=ecs_title(signal.cluster, signal.taskArn, signal.exitCode),
        env=env,
        classification={
            "error_code": code,
            "signal_type": NAME,
            "signal_format": "ecs_stopped_task_signal",
            "cluster": signal.cluster,
            "task_arn": signal.taskArn,
            "task_definition": signal.taskDefinition,
            "exit_code": signal.exitCode,
            "stopped_reason": signal.stoppedReason,
        },
        source_ref=signal.taskArn,
        signal_time=signal.stoppedAt,
        correlation=correlation,
        source=source,
        extra_evidence=[evidence("ecs_task_containers", signal.taskArn, containers, source)],
    )


# --- AWS EventBridge ---------------------------------------------------------------------------


def cluster_name(cluster_arn: str) -> str:
    """`arn:aws:ecs:<region>:<account>:cluster/<name>` → `<name>`; anything else unchanged."""
    if cluster_arn.startswith("arn:"):
        _, found, name = cluster_arn.rpartition(":cluster/")
        if found and name:
            return name
    return cluster_arn


def stopping_container(detail: EcsTaskDetail) -> EcsContainer | None:
    """The container whose exit stopped the task, or None.

    - A task stopped from outside (`stopCode` in EXTERNAL_STOP_CODES) has none.
    - Otherwise (`EssentialContainerExited` / "Essential container in task exited",
      `TaskFailedToStart`, no or an unknown stopCode): the first container, in event order, with
      a non-zero exitCode; else the first with exitCode 0; else none (no exit code reported).
    """
    if detail.stopCode in EXTERNAL_STOP_CODES:
        return None
    exited = [container for container in detail.containers if container.exitCode is not None]
    for container in exited:
        if container.exitCode != 0:
            return container
    return exited[0] if exited else None


def map_ecs_task_state_change(event: EcsTaskStateChangeEvent) -> IncidentInput | None:
    """An "ECS Task State Change" with `detail.lastStatus` STOPPED → an incident
    (the same rules as the documented signal).

    Other states → None (ignored). A different source or detail-type, or a STOPPED event without
    clusterArn, taskArn or stoppedAt → InvalidSignal(UNMAPPABLE).
    Key: `ecs_stopped:<cluster name>:<taskArn>:<stoppedAt>`.
    """
    if event.source != ECS_SOURCE or event.detail_type != ECS_DETAIL_TYPE:
        raise _unmappable(
            f'only source "{ECS_SOURCE}" with detail-type "{ECS_DETAIL_TYPE}" is accepted here'
        )
    detail = event.detail
    if detail.lastStatus != "STOPPED":
        return None
    missing = [
        name
        for name, value in (
            ("clusterArn", detail.clusterArn),
            ("taskArn", detail.taskArn),
            ("stoppedAt", detail.stoppedAt),
        )
        if not value
    ]
    if missing or not detail.clusterArn or not detail.taskArn or detail.stoppedAt is None:
        raise _unmappable(
            "STOPPED ECS Task State Change lacks " + ", ".join(f"detail.{m}" for m in missing)
        )
    cluster = cluster_name(detail.clusterArn)
    container = stopping_container(detail)
    exit_code = container.exitCode if container is not None else None
    severity = ecs_severity(exit_code, detail.stoppedReason)
    source = SignalPayload.of(event)
    data = source.payload["detail"]
    correlation = [f"ecs_cluster:{cluster}", f"ecs_task:{detail.taskArn}"]
    if detail.taskDefinitionArn:
        correlation.append(f"ecs_task_definition:{detail.taskDefinitionArn}")
    if detail.group and detail.group.startswith("service:"):
        correlation.append(f"ecs_service:{detail.group.removeprefix('service:')}")
    containers = pick(
        data,
        "taskArn",
        "taskDefinitionArn",
        "lastStatus",
        "stoppedReason",
        "stopCode",
        "containers",
    )
    containers["exitCode"] = exit_code
    containers["exitContainer"] = source.text(container.name if container is not None else None)
    return build_incident(
        key=f"ecs_stopped:{cluster}:{detail.taskArn}:{key_time(detail.stoppedAt)}",
        kind=NAME,
        severity=severity,
        title=ecs_title(cluster, detail.taskArn, exit_code),
        env=None,
        classification={
            "error_code": ecs_error_code(severity),
            "signal_type": NAME,
            "signal_format": "aws_eventbridge_ecs_task_state_change",
            "cluster": cluster,
            "cluster_arn": detail.clusterArn,
            "task_arn": detail.taskArn,
            "task_definition": detail.taskDefinitionArn,
            "exit_code": exit_code,
            "exit_container": container.name if container is not None else None,
            "stopped_reason": detail.stoppedReason,
            "stop_code": detail.stopCode,
            "group": detail.group,
            "aws_account": event.account,
            "aws_region": event.region,
            "event_id": event.id,
        },
        source_ref=detail.taskArn,
        signal_time=detail.stoppedAt,
        correlation=correlation,
        source=source,
        extra_evidence=[evidence("ecs_task_containers", detail.taskArn, containers, source)],
    )


def is_eventbridge(data: Mapping[str, Any]) -> bool:
    """A value with `detail-type` or `detail` is an EventBridge event, else the `seed` shape."""
    return "detail-type" in data or "detail" in data


SOURCE: Final = Source(
    name=NAME,
    topic="signals.ecs",
    setting="ecs",
    summary="Stopped ECS tasks, flattened or as the EventBridge event.",
    error_codes=ERROR_CODES,
    shapes=(
        Shape(
            "seed",
            EcsStoppedTaskSignal,
            lambda signal: (map_ecs_stopped_task(signal),),
            schema_file="ecs-stopped-task-signal.schema.json",
        ),
        Shape(
            "eventbridge",
            EcsTaskStateChangeEvent,
            lambda event: one(map_ecs_task_state_change(event)),
            claims=is_eventbridge,
            schema_file="ecs-task-state-change.schema.json",
        ),
    ),
)
