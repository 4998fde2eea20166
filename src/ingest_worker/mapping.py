"""Pure mappers: a parsed signal becomes incident inputs by the rules of seed 000 §1.A–§1.D.

No I/O, no clock, no randomness: the same signal always gives the same inputs, byte for byte.
Every mapper returns `None` (or an empty tuple) for a valid signal that creates no incident; the
pipeline counts it as `ignored`. The real-world envelopes (AWS EventBridge, GitHub webhooks) are
mapped in `envelopes.py` with the same building blocks and re-exported here.
"""

from __future__ import annotations

from typing import Any

from .domain import ErrorCode, IncidentInput, Severity, SourceKind
from .envelopes import map_ecs_task_state_change, map_workflow_job
from .incident_parts import (
    ECS_FAILURE_WORDS,
    SignalPayload,
    build_incident,
    ecs_error_code,
    ecs_severity,
    ecs_title,
    evidence,
    extra_text,
    key_time,
    pick,
    runner_incident,
)
from .signals import (
    DeployStatus,
    DeployStatusSignal,
    EcsStoppedTaskSignal,
    RunnerConclusion,
    RunnerStepFailureSignal,
    VerificationSignal,
    VerificationStatus,
)

__all__ = [
    "ECS_FAILURE_WORDS",
    "ecs_severity",
    "map_deploy_status",
    "map_ecs_stopped_task",
    "map_ecs_task_state_change",
    "map_runner_step_failure",
    "map_verification",
    "map_workflow_job",
]

#: seed 000: the key part used when a deployId is missing (or empty).
UNKNOWN = "unknown"


# --- §1.A deploy status ------------------------------------------------------------------------


def map_deploy_status(signal: DeployStatusSignal) -> IncidentInput | None:
    """GREEN → no incident; YELLOW / RED → an incident of that severity.

    Key: `deploy_status:<env>:<deployId|unknown>:<changedAt>`.
    """
    if signal.status is DeployStatus.GREEN:
        return None
    severity = Severity.RED if signal.status is DeployStatus.RED else Severity.YELLOW
    code = (
        ErrorCode.DEPLOY_STATUS_RED if severity is Severity.RED else ErrorCode.DEPLOY_STATUS_YELLOW
    )
    deploy_id = signal.deployId or None
    changed_at = key_time(signal.changedAt)
    source = SignalPayload.of(signal)
    data = source.payload
    snapshot = pick(data, "env", "status", "changedAt", "deployId", "signals", "reasons")
    title = f"Deploy status {signal.status.value} in {signal.env}"
    if deploy_id:
        title += f" (deploy {deploy_id})"
    classification: dict[str, Any] = {
        "error_code": code.value,
        "signal_type": SourceKind.DEPLOY_STATUS.value,
        "status": signal.status.value,
        "deploy_id": deploy_id,
        "reason_codes": [reason.code for reason in signal.reasons],
    }
    correlation = [f"env:{signal.env}"]
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    source_ref = f"{signal.env}:{deploy_id or UNKNOWN}:{changed_at}"
    return build_incident(
        key=f"deploy_status:{source_ref}",
        kind=SourceKind.DEPLOY_STATUS,
        severity=severity,
        title=title,
        env=signal.env,
        classification=classification,
        source_ref=source_ref,
        signal_time=signal.changedAt,
        correlation=correlation,
        source=source,
        extra_evidence=[
            evidence("deploy_status_snapshot", f"{signal.env}@{changed_at}", snapshot, source),
        ],
    )


# --- §1.B verification -------------------------------------------------------------------------


def map_verification(signal: VerificationSignal) -> IncidentInput | None:
    """`failed` / `timeout` → a RED incident; `passed` → none.

    Key: `verification:<deployId|unknown>:<reportHash>`, the runId standing in for a missing hash.
    """
    if signal.status is VerificationStatus.PASSED:
        return None
    code = (
        ErrorCode.VERIFICATION_TIMEOUT
        if signal.status is VerificationStatus.TIMEOUT
        else ErrorCode.VERIFICATION_FAILED
    )
    deploy_id = signal.deployId or None
    report = signal.reportHash or signal.runId
    source = SignalPayload.of(signal)
    data = source.payload
    failed_steps = signal.failedSteps or []
    extra = []
    if failed_steps:
        extra.append(
            evidence(
                "verification_failed_steps",
                signal.runId,
                pick(data, "runId", "playbookId", "playbookVersion", "status", "failedSteps"),
                source,
            )
        )
    if signal.reportHash:
        extra.append(
            evidence(
                "verification_report",
                signal.reportHash,
                pick(data, "reportHash", "runId", "playbookId", "playbookVersion", "completedAt"),
                source,
            )
        )
    correlation = [
        f"env:{signal.env}",
        f"verification_run:{signal.runId}",
        f"playbook:{signal.playbookId}",
    ]
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    return build_incident(
        key=f"verification:{deploy_id or UNKNOWN}:{report}",
        kind=SourceKind.VERIFICATION,
        severity=Severity.RED,
        title=(
            f"Post-deploy verification {signal.status.value} in {signal.env}: "
            + " ".join(part for part in (signal.playbookId, signal.playbookVersion) if part)
        ),
        env=signal.env,
        classification={
            "error_code": code.value,
            "signal_type": SourceKind.VERIFICATION.value,
            "status": signal.status.value,
            "deploy_id": deploy_id,
            "run_id": signal.runId,
            "playbook_id": signal.playbookId,
            "playbook_version": signal.playbookVersion,
            "report_hash": signal.reportHash or None,
            "failed_step_ids": [step.id for step in failed_steps],
        },
        source_ref=signal.runId,
        signal_time=signal.completedAt,
        correlation=correlation,
        source=source,
        extra_evidence=extra,
    )


# --- §1.C ECS stopped task ---------------------------------------------------------------------


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
        kind=SourceKind.ECS_STOPPED,
        severity=severity,
        title=ecs_title(signal.cluster, signal.taskArn, signal.exitCode),
        env=env,
        classification={
            "error_code": code.value,
            "signal_type": SourceKind.ECS_STOPPED.value,
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


# --- §1.D runner step --------------------------------------------------------------------------


def map_runner_step_failure(signal: RunnerStepFailureSignal) -> IncidentInput | None:
    """`failure` / `timeout` → RED, `cancelled` → YELLOW, `success` / `skipped` → none.

    Key: `runner:<runId>:<stepName>:<conclusion>`.
    """
    if signal.conclusion in (RunnerConclusion.SUCCESS, RunnerConclusion.SKIPPED):
        return None
    source = SignalPayload.of(signal)
    data = source.payload
    deploy_id = extra_text(signal, "deployId")
    env = extra_text(signal, "env")
    correlation = [f"runner_run:{signal.runId}"]
    if signal.workflowName:
        correlation.append(f"workflow:{signal.workflowName}")
    if signal.repository:
        correlation.append(f"repo:{signal.repository}")
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    if env:
        correlation.append(f"env:{env}")
    step = pick(
        data,
        "runId",
        "runUrl",
        "stepName",
        "conclusion",
        "completedAt",
        "errorMessage",
        "jobName",
        "workflowName",
        "repository",
        "ref",
    )
    return runner_incident(
        run_id=signal.runId,
        step_name=signal.stepName,
        conclusion=signal.conclusion,
        completed_at=signal.completedAt,
        workflow_name=signal.workflowName,
        env=env,
        classification={
            "signal_format": "runner_step_failure_signal",
            "job_name": signal.jobName,
            "repository": signal.repository,
            "ref": signal.ref,
            "run_url": signal.runUrl,
        },
        correlation=correlation,
        source=source,
        extra_evidence=[evidence("runner_step", f"{signal.runId}:{signal.stepName}", step, source)],
    )
