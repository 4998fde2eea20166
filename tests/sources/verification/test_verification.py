"""Seed 000 §1.B: post-deploy verification runs. failed / timeout → always RED; passed → nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_worker.core.values import Severity
from ingest_worker.sources.verification import VerificationSignal, map_verification
from tests.sources import FIXTURES


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def signal(name: str = "verification-failed.json", **changes: Any) -> VerificationSignal:
    data = fixture(name)
    data.update(changes)
    return VerificationSignal.model_validate({k: v for k, v in data.items() if v is not ...})


def test_passed_verification_creates_no_incident() -> None:
    assert map_verification(signal("verification-passed.json")) is None


def test_failed_verification_creates_a_red_incident_with_verification_failed() -> None:
    incident = map_verification(signal())
    assert incident is not None
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "VERIFICATION_FAILED"
    assert incident.source_kind == "verification"


def test_timed_out_verification_creates_a_red_incident_with_verification_timeout() -> None:
    incident = map_verification(signal("verification-timeout.json"))
    assert incident is not None
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "VERIFICATION_TIMEOUT"


def test_timeout_and_failed_differ_only_in_error_code() -> None:
    failed = map_verification(signal(status="failed"))
    timeout = map_verification(signal(status="timeout"))
    assert failed is not None and timeout is not None
    assert failed.incident_key == timeout.incident_key
    assert failed.severity is timeout.severity is Severity.RED
    assert (failed.classification["error_code"], timeout.classification["error_code"]) == (
        "VERIFICATION_FAILED",
        "VERIFICATION_TIMEOUT",
    )


def test_key_is_deploy_id_and_report_hash() -> None:
    incident = map_verification(signal())
    assert incident is not None
    assert incident.incident_key == "verification:deploy-123:sha256-abc"


@pytest.mark.parametrize("report_hash", [..., None, ""])
def test_key_falls_back_to_the_run_id_without_report_hash(report_hash: Any) -> None:
    incident = map_verification(signal(reportHash=report_hash))
    assert incident is not None
    assert incident.incident_key == "verification:deploy-123:run-456"
    assert [e.kind for e in incident.evidence] == ["verification", "verification_failed_steps"]


@pytest.mark.parametrize("deploy_id", [..., None, ""])
def test_missing_deploy_id_puts_unknown_in_the_key(deploy_id: Any) -> None:
    incident = map_verification(signal(deployId=deploy_id))
    assert incident is not None
    assert incident.incident_key == "verification:unknown:sha256-abc"
    assert not any(key.startswith("deploy:") for key in incident.correlation_keys)


def test_the_key_does_not_depend_on_completion_time() -> None:
    early = map_verification(signal(completedAt="2024-01-01T00:00:00Z"))
    late = map_verification(signal(completedAt="2024-01-02T00:00:00+03:00"))
    assert early is not None and late is not None
    assert early.incident_key == late.incident_key
    assert late.signal_time == datetime(2024, 1, 1, 21, tzinfo=UTC)


def test_failed_steps_and_report_are_additional_evidence() -> None:
    incident = map_verification(signal())
    assert incident is not None
    kinds = [e.kind for e in incident.evidence]
    assert kinds == ["verification", "verification_failed_steps", "verification_report"]
    steps = incident.evidence[1].payload
    assert steps["failedSteps"] == [{"id": "health", "title": "Health check", "error": "HTTP 500"}]
    assert incident.evidence[2].ref.startswith("sha256-abc@sha256:")
    assert incident.classification["failed_step_ids"] == ["health"]


def test_no_failed_steps_means_no_failed_steps_evidence() -> None:
    incident = map_verification(signal(failedSteps=[]))
    assert incident is not None
    assert "verification_failed_steps" not in [e.kind for e in incident.evidence]


def test_incident_carries_env_title_playbook_and_correlation() -> None:
    incident = map_verification(signal())
    assert incident is not None
    assert incident.env == "prod"
    assert incident.title == "Post-deploy verification failed in prod: post-deploy-verify 1.0.0"
    assert incident.source_primary.to_json() == {"kind": "verification", "ref": "run-456"}
    assert incident.classification["playbook_id"] == "post-deploy-verify"
    assert incident.classification["playbook_version"] == "1.0.0"
    assert incident.correlation_keys == (
        "deploy:deploy-123",
        "env:prod",
        "playbook:post-deploy-verify",
        "verification_run:run-456",
    )


def test_step_errors_are_redacted() -> None:
    steps = [{"id": "login", "title": "Login", "error": "401 for Bearer abcdefgh12345678"}]
    incident = map_verification(signal(failedSteps=steps))
    assert incident is not None
    assert "abcdefgh12345678" not in json.dumps([dict(e.payload) for e in incident.evidence])


def test_mapping_is_deterministic() -> None:
    assert map_verification(signal()) == map_verification(signal())
