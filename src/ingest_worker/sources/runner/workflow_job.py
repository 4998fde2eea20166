"""GitHub's `workflow_job` webhook: a completed job's failed, timed-out or cancelled steps as
runner step incidents, its successful steps as their recoveries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field

from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery
from ingest_worker.sources.building import (
    SignalPayload,
    evidence,
    pick,
    recovery,
)
from ingest_worker.sources.runner.steps import (
    NAME,
    RunnerConclusion,
    recovery_scope,
    runner_incident,
    unmappable,
)
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Count32,
    Id64,
    Name,
    Ref,
    RequiredName,
    RequiredRef,
    Signal,
    Timestamp,
    WireModel,
)


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


#: GitHub conclusion → the runner step conclusion; anything else creates no incident.
GITHUB_CONCLUSIONS: Final = {
    GitHubConclusion.FAILURE: RunnerConclusion.FAILURE,
    GitHubConclusion.TIMED_OUT: RunnerConclusion.TIMEOUT,
    GitHubConclusion.CANCELLED: RunnerConclusion.CANCELLED,
}


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


@dataclass(frozen=True, slots=True)
class _Job:
    """What every incident of one completed job shares."""

    job: GitHubWorkflowJob
    run_id: str
    source: SignalPayload
    evidence: EvidenceInput
    correlation: list[str]
    classification: dict[str, Any]

    @classmethod
    def of(cls, event: GitHubWorkflowJobEvent) -> _Job:
        job = event.workflow_job
        source = SignalPayload.of(event)
        job_data = source.payload["workflow_job"]
        repository = event.repository.full_name if event.repository is not None else None
        run_id = str(job.run_id)
        summary = pick(
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
        summary["repository"] = source.text(repository)
        correlation = [f"runner_run:{run_id}", f"runner_job:{job.id}"]
        if job.workflow_name:
            correlation.append(f"workflow:{job.workflow_name}")
        if repository:
            correlation.append(f"repo:{repository}")
        classification: dict[str, Any] = {
            "signal_format": "github_workflow_job",
            "job_id": job.id,
            "job_name": job.name,
            "run_attempt": job.run_attempt,
            "repository": repository,
            "head_branch": job.head_branch,
            "html_url": job.html_url,
        }
        job_evidence = evidence("runner_job", str(job.id), summary, source)
        return cls(job, run_id, source, job_evidence, correlation, classification)

    def incident(
        self,
        step_name: str,
        conclusion: RunnerConclusion,
        completed_at: datetime,
        step_number: int | None,
        extra_evidence: list[EvidenceInput],
    ) -> IncidentInput:
        return runner_incident(
            run_id=self.run_id,
            step_name=step_name,
            conclusion=conclusion,
            completed_at=completed_at,
            workflow_name=self.job.workflow_name,
            env=None,
            classification={**self.classification, "step_number": step_number},
            correlation=self.correlation,
            source=self.source,
            extra_evidence=[*extra_evidence, self.evidence],
        )


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
    found = _Job.of(event)
    incidents = _step_incidents(found)
    job = found.job
    job_conclusion = GITHUB_CONCLUSIONS.get(job.conclusion) if job.conclusion else None
    if (
        not incidents
        and job_conclusion is not None
        and job_conclusion is not RunnerConclusion.CANCELLED
    ):
        if job.completed_at is None:
            raise unmappable("workflow_job.completed_at is missing")
        incidents.append(found.incident(job.name, job_conclusion, job.completed_at, None, []))
    return tuple(incidents)


def _step_incidents(found: _Job) -> list[IncidentInput]:
    """One incident per step that failed, timed out or was cancelled (first of a name and
    conclusion only)."""
    job = found.job
    steps_data = found.source.payload["workflow_job"]["steps"] if job.steps else []
    incidents: list[IncidentInput] = []
    seen: set[tuple[str, RunnerConclusion]] = set()
    for index, step in enumerate(job.steps):
        conclusion = GITHUB_CONCLUSIONS.get(step.conclusion) if step.conclusion else None
        if conclusion is None or (step.name, conclusion) in seen:
            continue
        seen.add((step.name, conclusion))
        completed_at = step.completed_at or job.completed_at
        if completed_at is None:
            raise unmappable(
                f"workflow_job.steps.{index}.completed_at and workflow_job.completed_at are missing"
            )
        step_data = {**steps_data[index], "run_id": job.run_id, "job_id": job.id}
        step_evidence = evidence(
            "runner_step", f"{found.run_id}:{step.name}", step_data, found.source
        )
        incidents.append(
            found.incident(step.name, conclusion, completed_at, step.number, [step_evidence])
        )
    return incidents


def is_workflow_job(data: Mapping[str, Any]) -> bool:
    """A value with `workflow_job` is a GitHub webhook payload, else the runner's own
    step shape (`seed`)."""
    return "workflow_job" in data
