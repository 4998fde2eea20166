"""CI runner step results in the runner's own shape (`RunnerStepFailureSignal`), and the
incident and recovery of one step, which GitHub's `workflow_job` maps onto as well."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

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
from ingest_worker.sources.contract import one
from ingest_worker.sources.wire import (
    Name,
    Ref,
    RequiredName,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
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


def unmappable(message: str) -> InvalidSignal:
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
