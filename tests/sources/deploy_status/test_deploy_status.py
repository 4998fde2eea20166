"""Seed 000 §1.A: deploy status signals. GREEN → nothing, YELLOW / RED → an incident as severe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_worker.core.canonical import canonical_sha256
from ingest_worker.core.redaction import REDACTED
from ingest_worker.core.values import Severity
from ingest_worker.sources.deploy_status import DeployStatusSignal, map_deploy_status
from tests.sources import FIXTURES


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def signal(**changes: Any) -> DeployStatusSignal:
    data = fixture("deploy-status-red.json")
    data.update(changes)
    return DeployStatusSignal.model_validate({k: v for k, v in data.items() if v is not ...})


def test_green_deploy_status_creates_no_incident() -> None:
    assert (
        map_deploy_status(DeployStatusSignal.model_validate(fixture("deploy-status-green.json")))
        is None
    )


def test_yellow_deploy_status_creates_a_yellow_incident_with_deploy_status_yellow() -> None:
    incident = map_deploy_status(
        DeployStatusSignal.model_validate(fixture("deploy-status-yellow.json"))
    )
    assert incident is not None
    assert incident.severity is Severity.YELLOW
    assert incident.classification["error_code"] == "DEPLOY_STATUS_YELLOW" == "DEPLOY_STATUS_YELLOW"


def test_red_deploy_status_creates_a_red_incident_with_deploy_status_red() -> None:
    incident = map_deploy_status(signal())
    assert incident is not None
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "DEPLOY_STATUS_RED"
    assert incident.source_kind == "deploy_status"


def test_key_is_env_deploy_id_and_changed_at() -> None:
    incident = map_deploy_status(signal())
    assert incident is not None
    assert incident.incident_key == "deploy_status:prod:deploy-123:2024-01-01T00:00:00Z"


@pytest.mark.parametrize("deploy_id", [..., None, ""])
def test_missing_deploy_id_puts_unknown_in_the_key(deploy_id: Any) -> None:
    incident = map_deploy_status(signal(deployId=deploy_id))
    assert incident is not None
    assert incident.incident_key == "deploy_status:prod:unknown:2024-01-01T00:00:00Z"
    assert not any(key.startswith("deploy:") for key in incident.correlation_keys)
    assert incident.classification["deploy_id"] is None


def test_a_known_deploy_id_is_a_correlation_key() -> None:
    incident = map_deploy_status(signal())
    assert incident is not None
    assert incident.correlation_keys == ("deploy:deploy-123", "env:prod")


@pytest.mark.parametrize(
    "changed_at",
    [
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:00:00-05:00",
        "2024-01-01T00:00:00.000Z",
        "2024-01-01t00:00:00z",
        "2024-01-01T05:30:00.000000+05:30",
    ],
)
def test_the_same_instant_in_any_offset_gives_the_same_key(changed_at: str) -> None:
    incident = map_deploy_status(signal(changedAt=changed_at))
    assert incident is not None
    assert incident.incident_key == "deploy_status:prod:deploy-123:2024-01-01T00:00:00Z"
    assert incident.signal_time == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changed_at", "rendered"),
    [
        ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.5Z"),
        ("2024-01-01T00:00:00.120+00:00", "2024-01-01T00:00:00.12Z"),
        ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123456Z"),
        ("2024-01-01T02:00:00.000001+02:00", "2024-01-01T00:00:00.000001Z"),
    ],
)
def test_fractional_seconds_appear_in_the_key_only_when_non_zero(
    changed_at: str, rendered: str
) -> None:
    incident = map_deploy_status(signal(changedAt=changed_at))
    assert incident is not None
    assert incident.incident_key == f"deploy_status:prod:deploy-123:{rendered}"


def test_signal_time_is_the_change_time_in_aware_utc() -> None:
    incident = map_deploy_status(signal(changedAt="2024-06-01T12:00:00+02:00"))
    assert incident is not None
    assert incident.signal_time == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert incident.signal_time.tzinfo is UTC


def test_title_env_and_source_are_human_readable() -> None:
    incident = map_deploy_status(signal())
    assert incident is not None
    assert incident.title == "Deploy status RED in prod (deploy deploy-123)"
    assert incident.env == "prod"
    assert incident.source_primary.to_json() == {
        "kind": "deploy_status",
        "ref": "prod:deploy-123:2024-01-01T00:00:00Z",
    }
    assert incident.classification["reason_codes"] == ["HEALTH_FAIL"]


def test_primary_evidence_is_the_parsed_signal_with_the_source_kind() -> None:
    parsed = signal(extraField={"kept": True})
    incident = map_deploy_status(parsed)
    assert incident is not None
    primary = incident.evidence[0]
    assert primary.kind == incident.source_primary.kind == "deploy_status"
    assert primary.payload == parsed.model_dump(mode="json", by_alias=True)
    assert primary.payload["extraField"] == {"kept": True}
    assert primary.ref == f"prod:deploy-123:2024-01-01T00:00:00Z@sha256:{incident.signal_sha256}"


def test_status_snapshot_is_additional_evidence() -> None:
    incident = map_deploy_status(signal())
    assert incident is not None
    assert [e.kind for e in incident.evidence] == ["deploy_status", "deploy_status_snapshot"]
    snapshot = incident.evidence[1].payload
    assert snapshot["signals"] == {
        "checkedAt": "2024-01-01T00:00:00Z",
        "health": {"status": "fail", "httpStatus": 500},
    }
    assert snapshot["reasons"][0]["code"] == "HEALTH_FAIL"
    assert snapshot["status"] == "RED"


def test_signal_sha256_is_the_canonical_hash_of_the_parsed_signal() -> None:
    parsed = signal(extra=1)
    incident = map_deploy_status(parsed)
    assert incident is not None
    assert incident.signal_sha256 == canonical_sha256(parsed.model_dump(mode="json", by_alias=True))


def test_a_different_signal_for_the_same_key_has_a_different_identity() -> None:
    first = map_deploy_status(signal())
    second = map_deploy_status(
        signal(reasons=[{"code": "ERRORS", "severity": "error", "message": "5xx rate 9%"}])
    )
    assert first is not None and second is not None
    assert first.incident_key == second.incident_key
    assert first.signal_sha256 != second.signal_sha256
    assert first.evidence[0].ref != second.evidence[0].ref


def test_secrets_are_redacted_from_evidence_but_the_identity_is_of_the_real_signal() -> None:
    parsed = signal(
        signals={"probe": {"url": "https://probe:s3cret@health.example/ok", "apiToken": "t0k3n"}},
        reasons=[{"code": "AUTH", "severity": "error", "message": "Bearer abcdefgh12345 rejected"}],
    )
    incident = map_deploy_status(parsed)
    assert incident is not None
    stored = json.dumps([dict(e.payload) for e in incident.evidence])
    assert "s3cret" not in stored and "t0k3n" not in stored and "abcdefgh12345" not in stored
    assert incident.evidence[0].payload["signals"]["probe"]["apiToken"] == REDACTED
    assert incident.signal_sha256 == canonical_sha256(parsed.model_dump(mode="json", by_alias=True))


def test_title_is_redacted() -> None:
    incident = map_deploy_status(signal(deployId="ghp_" + "a" * 36))
    assert incident is not None
    assert incident.title == f"Deploy status RED in prod (deploy {REDACTED})"


def test_title_is_at_most_500_characters() -> None:
    incident = map_deploy_status(signal(env="e" * 512))
    assert incident is not None
    assert len(incident.title) == 500
    assert incident.title.endswith("…")


def test_mapping_is_deterministic() -> None:
    assert map_deploy_status(signal()) == map_deploy_status(signal())
