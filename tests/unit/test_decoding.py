"""Record decoding: bytes in, incident inputs or one typed rejection (with a safe message) out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery
from ingest_worker.sources.decode import MAX_ERROR_MESSAGE, decode_record
from tests.sources import FIXTURES

MAX = 1_048_576
SECRET = "ghp_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"

DEPLOY = "deploy_status"
VERIFICATION = "verification"
ECS = "ecs_stopped"
RUNNER = "runner"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def deploy(**changes: Any) -> dict[str, Any]:
    data = fixture("deploy-status-red.json")
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def rejected(kind: str, value: bytes | None, *, max_bytes: int = MAX) -> InvalidSignal:
    with pytest.raises(InvalidSignal) as caught:
        decode_record(kind, value, max_bytes=max_bytes)
    error = caught.value
    assert error.message and len(error.message) <= MAX_ERROR_MESSAGE
    return error


# --- accepted shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "count"),
    [
        (DEPLOY, "deploy-status-red.json", 1),
        (DEPLOY, "deploy-status-yellow.json", 1),
        (DEPLOY, "deploy-status-green.json", 0),
        (VERIFICATION, "verification-failed.json", 1),
        (VERIFICATION, "verification-timeout.json", 1),
        (VERIFICATION, "verification-passed.json", 0),
        (ECS, "ecs-stopped-task.json", 1),
        (ECS, "aws-ecs-task-state-change-stopped.json", 1),
        (ECS, "aws-ecs-task-state-change-running.json", 0),
        (RUNNER, "runner-step-failure.json", 1),
        (RUNNER, "github-workflow-job-completed-failure.json", 1),
    ],
)
def test_every_fixture_decodes_on_its_topic(kind: str, name: str, count: int) -> None:
    raw = (FIXTURES / name).read_bytes()
    inputs = [i for i in decode_record(kind, raw, max_bytes=MAX) if isinstance(i, IncidentInput)]
    assert len(inputs) == count
    assert all(item.source_kind is kind for item in inputs)


def test_valid_signals_that_create_no_incident_decode_to_an_empty_tuple() -> None:
    running = (FIXTURES / "aws-ecs-task-state-change-running.json").read_bytes()
    assert decode_record(ECS, running, max_bytes=MAX) == ()


def test_a_green_deploy_status_is_a_recovery_of_its_env_and_deploy() -> None:
    [found] = decode_record(DEPLOY, encode(deploy(status="GREEN")), max_bytes=MAX)
    assert isinstance(found, Recovery)
    assert found.scope.startswith("deploy_status:")


def test_ecs_topic_tells_the_eventbridge_envelope_from_the_seed_shape() -> None:
    [seed] = decode_record(ECS, (FIXTURES / "ecs-stopped-task.json").read_bytes(), max_bytes=MAX)
    [aws] = decode_record(
        ECS, (FIXTURES / "aws-ecs-task-state-change-stopped.json").read_bytes(), max_bytes=MAX
    )
    assert seed.classification["signal_format"] == "ecs_stopped_task_signal"
    assert aws.classification["signal_format"] == "aws_eventbridge_ecs_task_state_change"


def test_runner_topic_tells_the_github_payload_from_the_seed_shape() -> None:
    [seed] = decode_record(
        RUNNER, (FIXTURES / "runner-step-failure.json").read_bytes(), max_bytes=MAX
    )
    [github] = [
        item
        for item in decode_record(
            RUNNER,
            (FIXTURES / "github-workflow-job-completed-failure.json").read_bytes(),
            max_bytes=MAX,
        )
        if isinstance(item, IncidentInput)
    ]
    assert seed.classification["signal_format"] == "runner_step_failure_signal"
    assert github.classification["signal_format"] == "github_workflow_job"


def test_key_order_and_whitespace_of_the_json_do_not_change_the_result() -> None:
    data = deploy(extra={"b": 1, "a": [1, 2]})
    compact = json.dumps(data, separators=(",", ":")).encode()
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=4).encode()
    assert decode_record(DEPLOY, compact, max_bytes=MAX) == decode_record(
        DEPLOY, shuffled, max_bytes=MAX
    )


def test_a_shape_sent_to_the_wrong_topic_is_a_schema_violation() -> None:
    raw = (FIXTURES / "verification-failed.json").read_bytes()
    assert rejected(DEPLOY, raw).reason is RejectReason.SCHEMA_VIOLATION


# --- empty_value, too_large, invalid_encoding --------------------------------------------------


@pytest.mark.parametrize("value", [None, b""])
def test_missing_or_empty_value_is_empty_value(value: bytes | None) -> None:
    assert rejected(DEPLOY, value).reason is RejectReason.EMPTY_VALUE


def test_value_over_the_size_limit_is_too_large_before_it_is_parsed() -> None:
    error = rejected(DEPLOY, b"\xff" * 2049, max_bytes=2048)
    assert error.reason is RejectReason.TOO_LARGE
    assert "2049" in error.message and "2048" in error.message


def test_value_at_the_size_limit_is_accepted() -> None:
    raw = encode(deploy())
    assert len(decode_record(DEPLOY, raw, max_bytes=len(raw))) == 1


@pytest.mark.parametrize("value", [b"\xff\xfe\x00garbage", b'{"env": "\xc3\x28"}', b"\xed\xa0\x80"])
def test_bytes_that_are_not_utf8_are_invalid_encoding(value: bytes) -> None:
    assert rejected(DEPLOY, value).reason is RejectReason.INVALID_ENCODING


# --- invalid_json ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"env": "prod",}',
        "{'env': 'prod'}",
        '{"env": "prod"} trailing',
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        '{"env": "prod", "env": "stage"}',
        '{"a": {"b": 1, "b": 2}}',
        "\ufeff{}",
    ],
)
def test_text_that_is_not_strict_json_is_invalid_json(text: str) -> None:
    assert rejected(DEPLOY, text.encode()).reason is RejectReason.INVALID_JSON


def test_ten_thousand_levels_of_nesting_are_invalid_json_not_a_recursion_error() -> None:
    error = rejected(DEPLOY, b"[" * 10_000 + b"]" * 10_000)
    assert error.reason is RejectReason.INVALID_JSON
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    assert rejected(DEPLOY, deep_object).reason is RejectReason.INVALID_JSON


def test_nesting_is_allowed_up_to_64_levels() -> None:
    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    ok = deploy(extra=nested(63))  # the signal object is level 1, the lists of `extra` 2 to 64
    assert len(decode_record(DEPLOY, encode(ok), max_bytes=MAX)) == 1
    too_deep = deploy(extra=nested(64))
    assert rejected(DEPLOY, encode(too_deep)).reason is RejectReason.INVALID_JSON


# --- schema_violation --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"RED"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_a_schema_violation(text: str) -> None:
    error = rejected(DEPLOY, text.encode())
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "JSON object" in error.message


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"env": ...}, "env"),
        ({"status": "PURPLE"}, "status"),
        ({"status": "red"}, "status"),
        ({"changedAt": ...}, "changedAt"),
        ({"changedAt": "2024-01-01T00:00:00"}, "changedAt"),
        ({"changedAt": "2024-01-01"}, "changedAt"),
        ({"changedAt": 1704067200}, "changedAt"),
        ({"changedAt": "2024-13-01T00:00:00Z"}, "changedAt"),
        ({"changedAt": "9999-12-31T23:59:59-01:00"}, "changedAt"),
        ({"signals": ...}, "signals"),
        ({"signals": []}, "signals"),
        ({"reasons": "none"}, "reasons"),
        ({"reasons": [{"code": "X", "severity": "error"}]}, "reasons.0.message"),
        ({"deployId": 123}, "deployId"),
        ({"env": ""}, "env"),
        ({"env": "e" * 513}, "env"),
        ({"deployId": "d" * 513}, "deployId"),
        ({"reasons": [{"code": "X", "severity": "e", "message": "m" * 5001}]}, "reasons.0.message"),
        ({"reasons": [{"code": "X", "severity": "e", "message": "m"}] * 1001}, "reasons"),
    ],
)
def test_payload_breaking_the_contract_is_a_schema_violation_naming_the_field(
    changes: dict[str, Any], path: str
) -> None:
    error = rejected(DEPLOY, encode(deploy(**changes)))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert path in error.message
    assert "DeployStatusSignal" in error.message


def test_length_limits_accept_the_maximum() -> None:
    reasons = [{"code": "c" * 512, "severity": "e", "message": "m" * 5000}]
    reasons += [{"code": "c", "severity": "e", "message": "m"}] * 999
    assert decode_record(DEPLOY, encode(deploy(env="e" * 512, reasons=reasons)), max_bytes=MAX)


@pytest.mark.parametrize(
    "changes",
    [
        {"env": "pr\u0000od"},
        {"extra": "a\u0000b"},
        {"extra": {"nested": ["x", "\u0000"]}},
        {"signals": {"ke\u0000y": 1}},
    ],
)
def test_a_nul_character_anywhere_is_a_schema_violation(changes: dict[str, Any]) -> None:
    error = rejected(DEPLOY, encode(deploy(**changes)))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "NUL" in error.message


@pytest.mark.parametrize(
    "raw",
    [b'{"extra": "\\ud800"}', b'{"extra": "\\uDFFF x"}', b'{"\\udc00": 1}'],
)
def test_an_unpaired_surrogate_escape_is_a_schema_violation(raw: bytes) -> None:
    data = encode(deploy()).replace(b'"deployId"', raw[1:-1] + b', "deployId"')
    error = rejected(DEPLOY, data)
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "surrogate" in error.message


def test_a_surrogate_pair_escape_is_an_ordinary_character() -> None:
    data = encode(deploy()).replace(b'"deployId"', b'"emoji": "\\ud83d\\ude00", "deployId"')
    [item] = decode_record(DEPLOY, data, max_bytes=MAX)
    assert item.evidence[0].payload["emoji"] == "\U0001f600"


@pytest.mark.parametrize(
    "number",
    [
        str(2**63),
        str(-(2**63) - 1),
        "1" + "0" * 30,
        "1" * 5000,
        "1e400",
        "-1e999",
        "9" * 400 + ".0",
    ],
)
def test_numbers_that_cannot_be_stored_are_a_schema_violation(number: str) -> None:
    raw = encode(deploy(extra="NUMBER")).replace(b'"NUMBER"', number.encode())
    assert rejected(DEPLOY, raw).reason is RejectReason.SCHEMA_VIOLATION


def test_int64_bounds_are_accepted_in_extra_fields() -> None:
    assert decode_record(DEPLOY, encode(deploy(a=2**63 - 1, b=-(2**63), c=1.5e300)), max_bytes=MAX)


@pytest.mark.parametrize("exit_code", [2**31, -(2**31) - 1, "1", 1.0, True])
def test_exit_code_must_be_a_32_bit_integer(exit_code: Any) -> None:
    data = fixture("ecs-stopped-task.json")
    data["exitCode"] = exit_code
    error = rejected(ECS, encode(data))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "exitCode" in error.message


def test_eventbridge_envelope_fields_are_checked() -> None:
    data = fixture("aws-ecs-task-state-change-stopped.json")
    data["detail"]["containers"][0]["exitCode"] = "zero"
    del data["time"]
    error = rejected(ECS, encode(data))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "time" in error.message and "detail.containers.0.exitCode" in error.message


def test_github_conclusions_are_a_strict_enum() -> None:
    data = fixture("github-workflow-job-completed-failure.json")
    data["workflow_job"]["steps"][7]["conclusion"] = "exploded"
    error = rejected(RUNNER, encode(data))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert "workflow_job.steps.7.conclusion" in error.message


def test_runner_conclusion_of_the_seed_shape_is_a_strict_enum() -> None:
    data = fixture("runner-step-failure.json")
    data["conclusion"] = "timed_out"
    assert rejected(RUNNER, encode(data)).reason is RejectReason.SCHEMA_VIOLATION


# --- unmappable --------------------------------------------------------------------------------


def test_eventbridge_event_of_another_detail_type_is_unmappable() -> None:
    data = fixture("aws-ecs-task-state-change-stopped.json")
    data["detail-type"] = "ECS Container Instance State Change"
    data["detail"] = {"clusterArn": data["detail"]["clusterArn"], "status": "ACTIVE"}
    assert rejected(ECS, encode(data)).reason is RejectReason.UNMAPPABLE


def test_stopped_eventbridge_event_without_stopped_at_is_unmappable() -> None:
    data = fixture("aws-ecs-task-state-change-stopped.json")
    del data["detail"]["stoppedAt"]
    error = rejected(ECS, encode(data))
    assert error.reason is RejectReason.UNMAPPABLE
    assert "detail.stoppedAt" in error.message


# --- messages never echo input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        deploy(status=SECRET),
        deploy(changedAt=SECRET),
        deploy(env=SECRET * 20),
        deploy(reasons=[{"code": SECRET, "severity": 1, "message": SECRET}]),
        deploy(deployId=[SECRET]),
        deploy(extra=f"{SECRET}\u0000"),
        {SECRET: SECRET},
    ],
)
def test_error_messages_never_echo_input_values(data: dict[str, Any]) -> None:
    error = rejected(DEPLOY, encode(data))
    assert SECRET not in error.message
    assert SECRET[:12] not in error.message


def test_invalid_json_messages_never_echo_input() -> None:
    error = rejected(DEPLOY, f'{{"token": "{SECRET}" oops}}'.encode())
    assert error.reason is RejectReason.INVALID_JSON
    assert SECRET not in error.message
    assert "line 1" in error.message


def test_error_messages_are_truncated_to_1000_characters() -> None:
    data = {f"field{i}": i for i in range(10)}
    error = rejected(VERIFICATION, encode({**data, "failedSteps": [{"x": 1}] * 300}))
    assert error.reason is RejectReason.SCHEMA_VIOLATION
    assert len(error.message) <= MAX_ERROR_MESSAGE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deployId", "ghp_" + "a" * 36),
        ("env", "AKIA" + "B" * 16),
        ("deployId", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
        ("deployId", "password=hunter2x"),
        ("env", "token: abc123"),
    ],
)
def test_a_credential_in_an_identifier_field_is_refused_without_echoing_it(
    field: str, value: str
) -> None:
    signal = {
        "env": "prod",
        "status": "RED",
        "changedAt": "2024-01-01T00:00:00Z",
        "signals": {},
        "reasons": [],
        "deployId": "deploy-1",
        field: value,
    }
    with pytest.raises(InvalidSignal) as caught:
        decode_record("deploy_status", json.dumps(signal).encode(), max_bytes=1 << 20)
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
    assert value not in caught.value.message and "credential" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "signal", "key"),
    [
        (
            "ecs_stopped",
            {"cluster": "0", "taskArn": "APIKEY", "stoppedAt": "2000-01-01T00:00:00Z"},
            "ecs_stopped:0:APIKEY:2000-01-01T00:00:00Z",
        ),
        (
            "ecs_stopped",
            {"cluster": "0", "taskArn": "BEARER", "stoppedAt": "2000-01-01T00:00:00Z"},
            "ecs_stopped:0:BEARER:2000-01-01T00:00:00Z",
        ),
        (
            "runner",
            {
                "runId": "r1",
                "stepName": "Refresh token",
                "conclusion": "failure",
                "completedAt": "2024-01-01T00:00:00Z",
            },
            "runner:r1:Refresh token:failure",
        ),
    ],
)
def test_a_secret_word_before_the_colon_of_a_key_is_not_a_credential(
    kind: str, signal: dict[str, object], key: str
) -> None:
    """Key parts are joined by `:`: `token:failure` is two parts, not an assignment."""
    [item] = decode_record(kind, json.dumps(signal).encode(), max_bytes=1 << 20)
    assert item.incident_key == key
