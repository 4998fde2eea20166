"""CI runner step results: the seed shape and GitHub's `workflow_job` webhook.

failure and timeout open RED incidents, cancelled YELLOW; success and skipped create none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery, Severity
from ingest_worker.sources.building import (
    SignalPayload,
    build_incident,
    evidence,
    extra_text,
    pick,
    recovery,
)
from ingest_worker.sources.contract import Shape, Source, one
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Count32,
    Id64,
    Name,
    Ref,
    RequiredName,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
    WireModel,
)

NAME: Final = "runner"
RUNNER_STEP_FAILED: Final = "RUNNER_STEP_FAILED"
RUNNER_STEP_TIMEOUT: Final = "RUNNER_STEP_TIMEOUT"
ERROR_CODES: Final = (RUNNER_STEP_FAILED, RUNNER_STEP_TIMEOUT)


class RunnerConclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class RunnerStepFailureSignal(Signal):
    """One CI runner step result. `failure`, `timeout` and `cancelled` create incidents."""

    runId: RequiredRef
    runUrl: Ref | None = None
    stepName: RequiredName
    conclusion: RunnerConclusion
    completedAt: Timestamp
    errorMessage: Text | None = None
    jobName: Name | None = None
    workflowName: Name | None = None
    repository: Ref | None = None
    ref: Ref | None = None


class GitHubConclusion(StrEnum):
    """Conclusions GitHub reports for a check run, job or step."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    ACTION_REQUIRED = "action_required"
    STALE = "stale"
    STARTUP_FAILURE = "startup_failure"


GitHubStatus = Literal["requested", "queued", "pending", "waiting", "in_progress", "completed"]


class GitHubWorkflowStep(WireModel):
    name: RequiredName
    status: GitHubStatus
    conclusion: GitHubConclusion | None = None
    number: Count32
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None


class GitHubWorkflowJob(WireModel):
    id: Id64
    run_id: Id64
    run_attempt: Count32 | None = None
    workflow_name: Name | None = None
    name: RequiredName
    head_branch: Ref | None = None
    head_sha: Ref | None = None
    status: GitHubStatus
    conclusion: GitHubConclusion | None = None
    completed_at: Timestamp | None = None
    html_url: Ref | None = None
    steps: Annotated[list[GitHubWorkflowStep], Field(max_length=MAX_ITEMS)] = Field(
        default_factory=list
    )


class GitHubRepository(WireModel):
    full_name: RequiredRef


class GitHubWorkflowJobEvent(Signal):
    """GitHub's `workflow_job` webhook payload. Only `action: completed` can create incidents."""

    action: Literal["queued", "waiting", "in_progress", "completed"]
    workflow_job: GitHubWorkflowJob
    repository: GitHubRepository | None = None


#: GitHub conclusion → seed 000 §1.D conclusion; anything else creates no incident.
GITHUB_CONCLUSIONS: Final = {
    GitHubConclusion.FAILURE: RunnerConclusion.FAILURE,
    GitHubConclusion.TIMED_OUT: RunnerConclusion.TIMEOUT,
    GitHubConclusion.CANCELLED: RunnerConclusion.CANCELLED,
}


def _unmappable(message: str) -> InvalidSignal:
    return InvalidSignal(RejectReason.UNMAPPABLE, message)


def runner_incident(
    *,
    run_id: str,
    step_name: str,
    conclusion: RunnerConclusion,
    completed_at: datetime,
    workflow_name: str | None,
    env: str | None,
    classification: dict[str, Any],
    correlation: Iterable[str],
    source: SignalPayload,
    extra_evidence: Iterable[EvidenceInput],
) -> IncidentInput:
    """For one step: failure / timeout → RED, cancelled → YELLOW;
    timeout → RUNNER_STEP_TIMEOUT, failure and cancelled → RUNNER_STEP_FAILED."""
    severity = Severity.YELLOW if conclusion is RunnerConclusion.CANCELLED else Severity.RED
    code = RUNNER_STEP_TIMEOUT if conclusion is RunnerConclusion.TIMEOUT else RUNNER_STEP_FAILED
    if workflow_name:
        title = f"Workflow {workflow_name} {conclusion.value}: {step_name}"
    else:
        title = f"GitHub Actions {conclusion.value}: {step_name}"
    return build_incident(
        key=f"runner:{run_id}:{step_name}:{conclusion.value}",
        kind=NAME,
        severity=severity,
        title=title,
        env=env,
        classification={
            "error_code": code,
            "signal_type": NAME,
            "run_id": run_id,
            "step_name": step_name,
            "conclusion": conclusion.value,
            "workflow_name": workflow_name,
            **classification,
        },
        source_ref=f"{run_id}:{step_name}",
        signal_time=completed_at,
        correlation=correlation,
        source=source,
        extra_evidence=extra_evidence,
        scope=recovery_scope(run_id, step_name),
    )


def recovery_scope(run_id: str, step_name: str) -> str:
    """a success resolves the incidents of the same run and step, any conclusion."""
    return f"runner:{run_id}:{step_name}"


def recovery_of_step(signal: RunnerStepFailureSignal) -> Recovery | None:
    """A `success` step → the recovery of its run and step; other conclusions → None."""
    if signal.conclusion is not RunnerConclusion.SUCCESS:
        return None
    return recovery(
        kind=NAME,
        scope=recovery_scope(signal.runId, signal.stepName),
        source_ref=f"{signal.runId}:{signal.stepName}",
        signal_time=signal.completedAt,
        source=SignalPayload.of(signal),
    )


def step_effects(signal: RunnerStepFailureSignal) -> tuple[IncidentInput | Recovery, ...]:
    found = recovery_of_step(signal)
    return (found,) if found is not None else one(map_runner_step_failure(signal))


def job_recoveries(event: GitHubWorkflowJobEvent) -> tuple[Recovery, ...]:
    """A completed `workflow_job`: one recovery per successful step (and one for the job itself
    when it succeeded, for incidents a failed attempt opened under the job's name)."""
    if event.action != "completed":
        return ()
    job = event.workflow_job
    run_id = str(job.run_id)
    source: SignalPayload | None = None
    found: list[Recovery] = []
    named: list[tuple[str, datetime | None]] = [
        (step.name, step.completed_at or job.completed_at)
        for step in job.steps
        if step.conclusion is GitHubConclusion.SUCCESS
    ]
    if job.conclusion is GitHubConclusion.SUCCESS:
        named.append((job.name, job.completed_at))
    seen: set[str] = set()
    for name, completed_at in named:
        if completed_at is None or name in seen:
            continue
        seen.add(name)
        source = source or SignalPayload.of(event)
        found.append(
            recovery(
                kind=NAME,
                scope=recovery_scope(run_id, name),
                source_ref=f"{run_id}:{name}",
                signal_time=completed_at,
                source=source,
            )
        )
    return tuple(found)


def job_effects(event: GitHubWorkflowJobEvent) -> tuple[IncidentInput | Recovery, ...]:
    return (*map_workflow_job(event), *job_recoveries(event))


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


def is_workflow_job(data: Mapping[str, Any]) -> bool:
    """A value with `workflow_job` is a GitHub webhook payload, else the seed shape."""
    return "workflow_job" in data


SOURCE: Final = Source(
    name=NAME,
    topic="signals.runner",
    setting="runner",
    summary="CI runner step results, as the seed shape or GitHub workflow_job.",
    error_codes=ERROR_CODES,
    shapes=(
        Shape(
            "seed",
            RunnerStepFailureSignal,
            step_effects,
            schema_file="runner-step-failure-signal.schema.json",
        ),
        Shape(
            "workflow_job",
            GitHubWorkflowJobEvent,
            job_effects,
            claims=is_workflow_job,
            schema_file="github-workflow-job.schema.json",
        ),
    ),
)
