"""Wire models: the payload contracts on their own, as any Python caller would use them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ingest_worker.service.contracts import SCHEMA_FILES
from ingest_worker.sources.deploy_status import DeployStatusSignal
from ingest_worker.sources.ecs_stopped import EcsTaskStateChangeEvent
from ingest_worker.sources.runner import RunnerStepFailureSignal
from ingest_worker.sources.wire import parse_timestamp

DEPLOY: dict[str, Any] = {
    "env": "prod",
    "status": "RED",
    "changedAt": "2024-01-01T00:00:00Z",
    "signals": {},
    "reasons": [],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T01:00:00+01:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01t00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00.5-00:00", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-02-29T23:30:00-00:45", datetime(2024, 3, 1, 0, 15, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_with_offset_become_aware_utc(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01",
        "20240101T000000Z",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00+24:00",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:60Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
        " 2024-01-01T00:00:00Z",
        "",
    ],
)
def test_naive_malformed_or_out_of_range_timestamps_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize("value", [1704067200, 1704067200.0, None, ["2024-01-01T00:00:00Z"]])
def test_timestamps_must_be_strings(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_timestamps_serialize_canonically_in_json_mode() -> None:
    signal = DeployStatusSignal.model_validate(
        {**DEPLOY, "changedAt": "2024-01-01T01:00:00.250+01:00"}
    )
    assert signal.model_dump(mode="json")["changedAt"] == "2024-01-01T00:00:00.25Z"


def test_extra_fields_are_kept_at_every_level() -> None:
    signal = DeployStatusSignal.model_validate(
        {
            **DEPLOY,
            "team": "payments",
            "reasons": [{"code": "C", "severity": "s", "message": "m", "x": 1}],
        }
    )
    dumped = signal.model_dump(mode="json", by_alias=True)
    assert dumped["team"] == "payments"
    assert dumped["reasons"][0]["x"] == 1


def test_models_are_immutable() -> None:
    signal = DeployStatusSignal.model_validate(DEPLOY)
    with pytest.raises(ValidationError):
        signal.env = "stage"  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes",
    [{"env": "a\x00b"}, {"extra": ["\x00"]}, {"signals": {"\x00": 1}}, {"extra": "\ud800"}],
)
def test_models_reject_unstorable_text_anywhere_even_without_decoding(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError, match="cannot be stored"):
        DeployStatusSignal.model_validate({**DEPLOY, **changes})


def test_models_reject_numbers_out_of_range_and_deep_nesting_in_extra_fields() -> None:
    with pytest.raises(ValidationError):
        DeployStatusSignal.model_validate({**DEPLOY, "extra": 2**64})
    with pytest.raises(ValidationError):
        DeployStatusSignal.model_validate({**DEPLOY, "extra": float("nan")})
    deep: Any = 1
    for _ in range(70):
        deep = {"d": deep}
    with pytest.raises(ValidationError, match="nested deeper than 64"):
        DeployStatusSignal.model_validate({**DEPLOY, "extra": deep})


def test_validation_errors_do_not_echo_input() -> None:
    with pytest.raises(ValidationError) as caught:
        DeployStatusSignal.model_validate({**DEPLOY, "status": "hunter2-secret"})
    assert "hunter2-secret" not in str(caught.value)


def test_eventbridge_detail_type_is_read_by_its_aws_name() -> None:
    event = EcsTaskStateChangeEvent.model_validate(
        {
            "version": "0",
            "id": "e",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "1",
            "time": "2024-01-01T00:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {},
        }
    )
    assert event.detail_type == "ECS Task State Change"
    assert event.model_dump(by_alias=True)["detail-type"] == "ECS Task State Change"


@pytest.mark.parametrize("conclusion", ["failure", "timeout", "cancelled", "success", "skipped"])
def test_runner_conclusions_of_the_seed_and_spec_are_accepted(conclusion: str) -> None:
    data = {
        "runId": "1",
        "stepName": "s",
        "conclusion": conclusion,
        "completedAt": "2024-01-01T00:00:00Z",
    }
    assert RunnerStepFailureSignal.model_validate(data).conclusion == conclusion


def test_every_top_level_model_allows_extra_fields() -> None:
    for model in SCHEMA_FILES.values():
        assert model.model_config.get("extra") == "allow"
        assert model.model_json_schema()["additionalProperties"] is True
