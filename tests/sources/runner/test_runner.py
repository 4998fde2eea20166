"""Seed 000 §1.D: CI runner steps, as the seed shape and as GitHub's `workflow_job` webhook.

failure / timeout → RED, cancelled → YELLOW; timeout → RUNNER_STEP_TIMEOUT, the others
RUNNER_STEP_FAILED; success / skipped → nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.redaction import REDACTED
from ingest_worker.core.values import IncidentInput, Severity
from ingest_worker.sources.runner import (
    GitHubWorkflowJobEvent,
    RunnerStepFailureSignal,
    map_runner_step_failure,
    map_workflow_job,
)
from tests.sources import FIXTURES

RUN_ID = 2202229078


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def plain(**changes: Any) -> RunnerStepFailureSignal:
    data = fixture("runner-step-failure.json")
    data.update(changes)
    return RunnerStepFailureSignal.model_validate({k: v for k, v in data.items() if v is not ...})


def job(**changes: Any) -> dict[str, Any]:
    data = fixture("github-workflow-job-completed-failure.json")
    data["workflow_job"].update(changes)
    return data


def step(name: str, conclusion: str | None, number: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "status": "completed" if conclusion else "queued",
        "conclusion": conclusion,
        "number": number,
        "started_at": "2021-08-05T10:26:27.000Z",
        "completed_at": "2021-08-05T10:26:28.000Z",
        **extra,
    }


def mapped(data: dict[str, Any]) -> tuple[IncidentInput, ...]:
    return map_workflow_job(GitHubWorkflowJobEvent.model_validate(data))


# --- the seed shape ----------------------------------------------------------------------------


@pytest.mark.parametrize("conclusion", ["success", "skipped"])
def test_successful_or_skipped_step_creates_no_incident(conclusion: str) -> None:
    assert map_runner_step_failure(plain(conclusion=conclusion)) is None


def test_failed_step_is_a_red_runner_step_failure() -> None:
    incident = map_runner_step_failure(plain(conclusion="failure"))
    assert incident is not None
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "RUNNER_STEP_FAILED"
    assert incident.source_kind == "runner"


def test_timed_out_step_is_a_red_runner_step_timeout() -> None:
    incident = map_runner_step_failure(plain(conclusion="timeout"))
    assert incident is not None
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "RUNNER_STEP_TIMEOUT"


def test_cancelled_step_is_a_yellow_runner_step_failure() -> None:
    incident = map_runner_step_failure(plain(conclusion="cancelled"))
    assert incident is not None
    assert incident.severity is Severity.YELLOW
    assert incident.classification["error_code"] == "RUNNER_STEP_FAILED"


@pytest.mark.parametrize("conclusion", ["failure", "timeout", "cancelled"])
def test_key_is_run_id_step_name_and_conclusion(conclusion: str) -> None:
    incident = map_runner_step_failure(plain(conclusion=conclusion))
    assert incident is not None
    assert incident.incident_key == f"runner:run-12345:deploy:{conclusion}"


def test_the_key_does_not_depend_on_the_completion_time() -> None:
    first = map_runner_step_failure(plain(completedAt="2024-01-01T00:00:00Z"))
    again = map_runner_step_failure(plain(completedAt="2024-01-01T03:00:00+01:00"))
    assert first is not None and again is not None
    assert first.incident_key == again.incident_key
    assert again.signal_time == datetime(2024, 1, 1, 2, tzinfo=UTC)


def test_title_names_the_workflow_when_known() -> None:
    named = map_runner_step_failure(plain())
    anonymous = map_runner_step_failure(plain(workflowName=None))
    assert named is not None and anonymous is not None
    assert named.title == "Workflow Deploy failure: deploy"
    assert anonymous.title == "GitHub Actions failure: deploy"


def test_step_details_are_additional_evidence_and_classification() -> None:
    incident = map_runner_step_failure(plain())
    assert incident is not None
    assert [e.kind for e in incident.evidence] == ["runner", "runner_step"]
    assert incident.evidence[1].payload["errorMessage"] == "Process completed with exit code 1."
    assert incident.classification["workflow_name"] == "Deploy"
    assert incident.classification["job_name"] == "release"
    assert incident.correlation_keys == (
        "repo:acme/shop",
        "runner_run:run-12345",
        "workflow:Deploy",
    )
    assert incident.source_primary.to_json() == {"kind": "runner", "ref": "run-12345:deploy"}


def test_error_message_secrets_are_redacted() -> None:
    incident = map_runner_step_failure(
        plain(errorMessage=f"push failed with ghp_{'x' * 36} for https://u:p4ss@git.example/r")
    )
    assert incident is not None
    stored = json.dumps([dict(e.payload) for e in incident.evidence])
    assert "ghp_" not in stored and "p4ss" not in stored
    assert incident.evidence[1].payload["errorMessage"] == (
        f"push failed with {REDACTED} for https://{REDACTED}@git.example/r"
    )


# --- the GitHub workflow_job webhook -----------------------------------------------------------


def test_completed_job_from_the_github_documentation_gives_one_incident_for_the_failed_step() -> (
    None
):
    [incident] = mapped(fixture("github-workflow-job-completed-failure.json"))
    assert incident.incident_key == f"runner:{RUN_ID}:Run yarn run format-check:failure"
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "RUNNER_STEP_FAILED"
    assert incident.signal_time == datetime(2021, 8, 5, 10, 26, 28, tzinfo=UTC)
    assert incident.title == "Workflow Linters failure: Run yarn run format-check"
    assert incident.classification["workflow_name"] == "Linters"
    assert incident.classification["job_name"] == "linters"
    assert incident.classification["step_number"] == 8
    assert incident.classification["run_attempt"] == 1


def test_github_timed_out_maps_to_the_seed_timeout() -> None:
    [incident] = mapped(job(steps=[step("Integration tests", "timed_out", 3)]))
    assert incident.incident_key == f"runner:{RUN_ID}:Integration tests:timeout"
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "RUNNER_STEP_TIMEOUT"
    assert incident.classification["conclusion"] == "timeout"


def test_github_cancelled_step_is_yellow() -> None:
    [incident] = mapped(job(conclusion="cancelled", steps=[step("Deploy", "cancelled", 4)]))
    assert incident.incident_key == f"runner:{RUN_ID}:Deploy:cancelled"
    assert incident.severity is Severity.YELLOW


def test_one_incident_per_failed_timed_out_or_cancelled_step_in_step_order() -> None:
    steps = [
        step("Set up job", "success", 1),
        step("Lint", "failure", 2),
        step("Unit", "timed_out", 3),
        step("Skipped", "skipped", 4),
        step("Neutral", "neutral", 5),
        step("Deploy", "cancelled", 6),
        step("Queued", None, 7),
    ]
    keys = [i.incident_key for i in mapped(job(steps=steps))]
    assert keys == [
        f"runner:{RUN_ID}:Lint:failure",
        f"runner:{RUN_ID}:Unit:timeout",
        f"runner:{RUN_ID}:Deploy:cancelled",
    ]


def test_successful_job_creates_no_incident() -> None:
    assert mapped(job(conclusion="success", steps=[step("Build", "success", 1)])) == ()


@pytest.mark.parametrize("action", ["queued", "in_progress", "waiting"])
def test_jobs_that_are_not_completed_create_no_incident(action: str) -> None:
    data = job(status="in_progress", conclusion=None, completed_at=None)
    data["action"] = action
    assert mapped(data) == ()


def test_step_without_completion_time_uses_the_job_completion_time() -> None:
    [incident] = mapped(job(steps=[step("Lint", "failure", 2, completed_at=None)]))
    assert incident.signal_time == datetime(2021, 8, 5, 10, 38, 16, tzinfo=UTC)


def test_failed_step_without_any_completion_time_is_unmappable() -> None:
    with pytest.raises(InvalidSignal) as caught:
        mapped(job(completed_at=None, steps=[step("Lint", "failure", 2, completed_at=None)]))
    assert caught.value.reason is RejectReason.UNMAPPABLE
    assert "completed_at" in caught.value.message


def test_steps_repeating_a_name_and_conclusion_share_one_incident() -> None:
    incidents = mapped(job(steps=[step("Test", "failure", 2), step("Test", "failure", 5)]))
    assert [i.incident_key for i in incidents] == [f"runner:{RUN_ID}:Test:failure"]
    assert incidents[0].classification["step_number"] == 2


def test_failed_job_without_failed_steps_is_one_incident_for_the_job() -> None:
    [incident] = mapped(job(steps=[]))
    assert incident.incident_key == f"runner:{RUN_ID}:linters:failure"
    assert incident.signal_time == datetime(2021, 8, 5, 10, 38, 16, tzinfo=UTC)
    assert [e.kind for e in incident.evidence] == ["runner", "runner_job"]


def test_timed_out_job_without_steps_is_a_timeout_of_the_job() -> None:
    [incident] = mapped(job(conclusion="timed_out", steps=[]))
    assert incident.incident_key == f"runner:{RUN_ID}:linters:timeout"


def test_cancelled_job_without_steps_creates_no_incident() -> None:
    assert mapped(job(conclusion="cancelled", steps=[])) == ()


def test_job_and_step_details_are_evidence_and_correlation() -> None:
    [incident] = mapped(fixture("github-workflow-job-completed-failure.json"))
    assert [e.kind for e in incident.evidence] == ["runner", "runner_step", "runner_job"]
    assert incident.evidence[0].payload["repository"]["full_name"] == "Codertocat/Hello-World"
    assert incident.evidence[1].payload["name"] == "Run yarn run format-check"
    assert incident.evidence[1].payload["run_id"] == RUN_ID
    job_details = incident.evidence[2].payload
    assert job_details["html_url"] == "https://github.com/octo-org/octo-repo/runs/1291536064"
    assert job_details["repository"] == "Codertocat/Hello-World"
    assert incident.correlation_keys == (
        "repo:Codertocat/Hello-World",
        "runner_job:289782451",
        f"runner_run:{RUN_ID}",
        "workflow:Linters",
    )


def test_github_and_seed_shape_of_one_failure_share_the_key() -> None:
    [from_github] = mapped(fixture("github-workflow-job-completed-failure.json"))
    from_seed = map_runner_step_failure(
        RunnerStepFailureSignal.model_validate(
            {
                "runId": str(RUN_ID),
                "stepName": "Run yarn run format-check",
                "conclusion": "failure",
                "completedAt": "2021-08-05T10:26:28Z",
            }
        )
    )
    assert from_seed is not None
    assert from_github.incident_key == from_seed.incident_key


def test_every_step_incident_carries_the_identity_of_the_whole_payload() -> None:
    incidents = mapped(job(steps=[step("A", "failure", 1), step("B", "failure", 2)]))
    assert len({i.signal_sha256 for i in incidents}) == 1
    assert mapped(job(steps=[step("A", "failure", 1), step("B", "failure", 2)])) == incidents
