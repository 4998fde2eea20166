"""Mappers of the real-world envelopes: EventBridge "ECS Task State Change", GitHub `workflow_job`.

They apply the rules of seed 000 §1.C and §1.D to what AWS and GitHub actually send. Pure.
"""

from __future__ import annotations

from typing import Any, Final

from .domain import IncidentInput, SourceKind
from .errors import InvalidSignal, RejectReason
from .incident_parts import (
    SignalPayload,
    build_incident,
    ecs_error_code,
    ecs_severity,
    ecs_title,
    evidence,
    key_time,
    pick,
    runner_incident,
)
from .signals import (
    EcsContainer,
    EcsTaskDetail,
    EcsTaskStateChangeEvent,
    GitHubConclusion,
    GitHubWorkflowJobEvent,
    RunnerConclusion,
)

ECS_DETAIL_TYPE: Final = "ECS Task State Change"
ECS_SOURCE: Final = "aws.ecs"

#: `stopCode`s for a task stopped from outside (a user, the service scheduler, a Spot reclaim): the
#: containers' exit codes (143, 137 after SIGTERM / SIGKILL) are consequences, not the cause.
EXTERNAL_STOP_CODES: Final = frozenset(
    {"UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"}
)

#: GitHub conclusion → seed 000 §1.D conclusion; anything else creates no incident.
GITHUB_CONCLUSIONS: Final = {
    GitHubConclusion.FAILURE: RunnerConclusion.FAILURE,
    GitHubConclusion.TIMED_OUT: RunnerConclusion.TIMEOUT,
    GitHubConclusion.CANCELLED: RunnerConclusion.CANCELLED,
}


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


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
    """An "ECS Task State Change" with `detail.lastStatus` STOPPED → an incident (seed §1.C rules).

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
        kind=SourceKind.ECS_STOPPED,
        severity=severity,
        title=ecs_title(cluster, detail.taskArn, exit_code),
        env=None,
        classification={
            "error_code": ecs_error_code(severity).value,
            "signal_type": SourceKind.ECS_STOPPED.value,
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


# --- GitHub workflow_job -----------------------------------------------------------------------


def map_workflow_job(event: GitHubWorkflowJobEvent) -> tuple[IncidentInput, ...]:
    """A completed `workflow_job` → one incident per failed, timed-out or cancelled step.

    Key: `runner:<run_id>:<step name>:<conclusion>` with `timed_out` → `timeout`. The step's
    completed_at is the signal time (the job's when the step has none). Steps repeating a name and
    conclusion already mapped are folded into the first (they share its key). A job that failed or
    timed out without any such step (no steps reported, a runner lost) gives one incident for the
    job, its name standing for the step. Other actions (queued, in_progress, waiting) → empty.
    """
    if event.action != "completed":
        return ()
    job = event.workflow_job
    source = SignalPayload.of(event)
    job_data = source.payload["workflow_job"]
    repository = event.repository.full_name if event.repository is not None else None
    run_id = str(job.run_id)
    job_summary = pick(
        job_data,
        "id",
        "run_id",
        "run_attempt",
        "name",
        "workflow_name",
        "status",
        "conclusion",
        "completed_at",
        "html_url",
        "head_branch",
        "head_sha",
    )
    job_summary["repository"] = source.text(repository)
    job_evidence = evidence("runner_job", str(job.id), job_summary, source)
    correlation = [f"runner_run:{run_id}", f"runner_job:{job.id}"]
    if job.workflow_name:
        correlation.append(f"workflow:{job.workflow_name}")
    if repository:
        correlation.append(f"repo:{repository}")
    common: dict[str, Any] = {
        "signal_format": "github_workflow_job",
        "job_id": job.id,
        "job_name": job.name,
        "run_attempt": job.run_attempt,
        "repository": repository,
        "head_branch": job.head_branch,
        "html_url": job.html_url,
    }

    incidents: list[IncidentInput] = []
    seen: set[tuple[str, RunnerConclusion]] = set()
    for index, step in enumerate(job.steps):
        conclusion = GITHUB_CONCLUSIONS.get(step.conclusion) if step.conclusion else None
        if conclusion is None or (step.name, conclusion) in seen:
            continue
        seen.add((step.name, conclusion))
        completed_at = step.completed_at or job.completed_at
        if completed_at is None:
            raise _unmappable(
                f"workflow_job.steps.{index}.completed_at and workflow_job.completed_at are missing"
            )
        step_data = {**job_data["steps"][index], "run_id": job.run_id, "job_id": job.id}
        incidents.append(
            runner_incident(
                run_id=run_id,
                step_name=step.name,
                conclusion=conclusion,
                completed_at=completed_at,
                workflow_name=job.workflow_name,
                env=None,
                classification={**common, "step_number": step.number},
                correlation=correlation,
                source=source,
                extra_evidence=[
                    evidence("runner_step", f"{run_id}:{step.name}", step_data, source),
                    job_evidence,
                ],
            )
        )

    job_conclusion = GITHUB_CONCLUSIONS.get(job.conclusion) if job.conclusion else None
    if (
        not incidents
        and job_conclusion is not None
        and job_conclusion is not RunnerConclusion.CANCELLED
    ):
        if job.completed_at is None:
            raise _unmappable("workflow_job.completed_at is missing")
        incidents.append(
            runner_incident(
                run_id=run_id,
                step_name=job.name,
                conclusion=job_conclusion,
                completed_at=job.completed_at,
                workflow_name=job.workflow_name,
                env=None,
                classification={**common, "step_number": None},
                correlation=correlation,
                source=source,
                extra_evidence=[job_evidence],
            )
        )
    return tuple(incidents)
