"""CI runner step results: the runner's own step shape and GitHub's `workflow_job` webhook.

failure and timeout open RED incidents, cancelled YELLOW; success and skipped create none.
"""

from __future__ import annotations

from typing import Final

from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.runner.steps import (
    ERROR_CODES,
    NAME,
    RUNNER_STEP_FAILED,
    RUNNER_STEP_TIMEOUT,
    RunnerConclusion,
    RunnerStepFailureSignal,
    map_runner_step_failure,
    recovery_of_step,
    recovery_scope,
    runner_incident,
    step_effects,
)
from ingest_worker.sources.runner.workflow_job import (
    GITHUB_CONCLUSIONS,
    GitHubConclusion,
    GitHubWorkflowJobEvent,
    is_workflow_job,
    job_effects,
    job_recoveries,
    map_workflow_job,
)

__all__ = [
    "ERROR_CODES",
    "GITHUB_CONCLUSIONS",
    "NAME",
    "RUNNER_STEP_FAILED",
    "RUNNER_STEP_TIMEOUT",
    "SOURCE",
    "GitHubConclusion",
    "GitHubWorkflowJobEvent",
    "RunnerConclusion",
    "RunnerStepFailureSignal",
    "is_workflow_job",
    "job_effects",
    "job_recoveries",
    "map_runner_step_failure",
    "map_workflow_job",
    "recovery_of_step",
    "recovery_scope",
    "runner_incident",
    "step_effects",
]

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
