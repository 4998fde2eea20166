"""Seed 000 §1.C: stopped ECS tasks, as the seed shape and as the AWS EventBridge event.

RED (ECS_TASK_FAILED) when the exit code is non-zero or the stoppedReason says error, fail or
crash in any case; YELLOW (ECS_TASK_STOPPED) otherwise.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import Severity
from ingest_worker.sources.ecs_stopped import (
    EcsStoppedTaskSignal,
    EcsTaskStateChangeEvent,
    cluster_name,
    map_ecs_stopped_task,
    map_ecs_task_state_change,
)
from tests.sources import FIXTURES

TASK = "arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/0123456789abcdef0123456789abcdef"
AWS_TASK = "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def plain(**changes: Any) -> EcsStoppedTaskSignal:
    data = fixture("ecs-stopped-task.json")
    data.update(changes)
    return EcsStoppedTaskSignal.model_validate({k: v for k, v in data.items() if v is not ...})


def event(name: str = "aws-ecs-task-state-change-stopped.json", /, **detail: Any) -> dict[str, Any]:
    data = fixture(name)
    for key, value in detail.items():
        if value is ...:
            data["detail"].pop(key, None)
        else:
            data["detail"][key] = value
    return data


def mapped(data: dict[str, Any]) -> Any:
    return map_ecs_task_state_change(EcsTaskStateChangeEvent.model_validate(data))


# --- the seed shape ----------------------------------------------------------------------------


def test_non_zero_exit_code_is_a_red_task_failure() -> None:
    incident = map_ecs_stopped_task(plain(exitCode=137, stoppedReason="Task stopped"))
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "ECS_TASK_FAILED"
    assert incident.source_kind == "ecs_stopped"


@pytest.mark.parametrize("exit_code", [-1, 1, 255, 2**31 - 1])
def test_any_non_zero_exit_code_is_red(exit_code: int) -> None:
    assert (
        map_ecs_stopped_task(plain(exitCode=exit_code, stoppedReason=None)).severity is Severity.RED
    )


def test_exit_code_zero_with_a_neutral_reason_is_a_yellow_stop() -> None:
    incident = map_ecs_stopped_task(plain(exitCode=0, stoppedReason="Scaling activity initiated"))
    assert incident.severity is Severity.YELLOW
    assert incident.classification["error_code"] == "ECS_TASK_STOPPED"


@pytest.mark.parametrize("exit_code", [..., None])
def test_absent_or_null_exit_code_is_not_a_non_zero_exit(exit_code: Any) -> None:
    incident = map_ecs_stopped_task(plain(exitCode=exit_code, stoppedReason="Task stopped by user"))
    assert incident.severity is Severity.YELLOW
    assert incident.classification["exit_code"] is None


@pytest.mark.parametrize(
    "reason",
    [
        "error",
        "ERROR",
        "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        "Task failed ELB health checks",
        "FAILED to start",
        "Container crashed",
        "CRASH loop",
        "ResourceInitializationError: unable to pull secrets",
    ],
)
def test_stopped_reason_with_error_fail_or_crash_in_any_case_is_red(reason: str) -> None:
    incident = map_ecs_stopped_task(plain(exitCode=0, stoppedReason=reason))
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "ECS_TASK_FAILED"


@pytest.mark.parametrize(
    "reason", ["Essential container in task exited", "Task stopped by user", "", None, ...]
)
def test_other_reasons_with_exit_code_zero_are_yellow(reason: Any) -> None:
    assert map_ecs_stopped_task(plain(exitCode=0, stoppedReason=reason)).severity is Severity.YELLOW


def test_key_is_cluster_task_arn_and_stopped_at() -> None:
    incident = map_ecs_stopped_task(plain())
    assert incident.incident_key == f"ecs_stopped:prod-cluster:{TASK}:2024-01-01T00:00:00Z"
    assert incident.source_primary.to_json() == {"kind": "ecs_stopped", "ref": TASK}


@pytest.mark.parametrize(
    ("stopped_at", "rendered"),
    [
        ("2024-01-01T02:00:00+02:00", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00Z"),
        ("2023-12-31T23:59:59.250-00:00", "2023-12-31T23:59:59.25Z"),
    ],
)
def test_stopped_at_is_rendered_canonically_in_the_key(stopped_at: str, rendered: str) -> None:
    incident = map_ecs_stopped_task(plain(stoppedAt=stopped_at))
    assert incident.incident_key == f"ecs_stopped:prod-cluster:{TASK}:{rendered}"


def test_the_cluster_of_the_seed_shape_is_used_as_sent() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:cluster/prod-cluster"
    incident = map_ecs_stopped_task(plain(cluster=arn))
    assert incident.incident_key.startswith(f"ecs_stopped:{arn}:{TASK}:")


def test_container_details_are_additional_evidence() -> None:
    incident = map_ecs_stopped_task(plain())
    assert [e.kind for e in incident.evidence] == ["ecs_stopped", "ecs_task_containers"]
    details = incident.evidence[1].payload
    assert details["containers"] == [
        {
            "name": "api",
            "exitCode": 137,
            "reason": "OutOfMemoryError: Container killed due to memory usage",
        }
    ]
    assert details["exitCode"] == 137


def test_title_classification_and_correlation() -> None:
    incident = map_ecs_stopped_task(plain())
    assert incident.title == (
        "ECS task stopped in prod-cluster: 0123456789abcdef0123456789abcdef (exit code 137)"
    )
    assert incident.env is None
    assert incident.signal_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert incident.classification["signal_format"] == "ecs_stopped_task_signal"
    assert incident.correlation_keys == (
        "ecs_cluster:prod-cluster",
        f"ecs_task:{TASK}",
        "ecs_task_definition:arn:aws:ecs:us-east-1:123456789012:task-definition/api:42",
    )


def test_extra_deploy_id_and_env_fields_join_the_correlation_keys() -> None:
    incident = map_ecs_stopped_task(plain(deployId="deploy-123", env="prod"))
    assert "deploy:deploy-123" in incident.correlation_keys
    assert "env:prod" in incident.correlation_keys
    assert incident.env == "prod"


# --- the AWS EventBridge event -----------------------------------------------------------------


def test_running_task_state_change_from_the_aws_documentation_is_ignored() -> None:
    assert mapped(fixture("aws-ecs-task-state-change-running.json")) is None


@pytest.mark.parametrize(
    "status", ["PROVISIONING", "PENDING", "RUNNING", "STOPPING", "DEPROVISIONING"]
)
def test_only_the_stopped_state_maps(status: str) -> None:
    assert mapped(event(lastStatus=status)) is None


def test_stopped_task_state_change_becomes_an_incident() -> None:
    incident = mapped(event())
    assert incident.incident_key == (
        f"ecs_stopped:FargateCluster:{AWS_TASK}:2020-01-23T18:03:11.817Z"
    )
    assert incident.severity is Severity.RED
    assert incident.classification["error_code"] == "ECS_TASK_FAILED"
    assert incident.signal_time == datetime(2020, 1, 23, 18, 3, 11, 817000, tzinfo=UTC)
    assert incident.source_primary.to_json() == {"kind": "ecs_stopped", "ref": AWS_TASK}
    assert incident.evidence[0].kind == "ecs_stopped"
    assert incident.evidence[0].payload["detail-type"] == "ECS Task State Change"


def test_the_cluster_is_the_name_taken_from_the_cluster_arn() -> None:
    incident = mapped(event())
    assert incident.classification["cluster"] == "FargateCluster"
    assert incident.classification["cluster_arn"] == (
        "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster"
    )
    assert cluster_name("arn:aws:ecs:us-east-1:1:cluster/prod") == "prod"
    assert cluster_name("arn:aws-cn:ecs:cn-north-1:1:cluster/a-b_c") == "a-b_c"
    assert cluster_name("prod") == "prod"
    assert cluster_name("arn:aws:ecs:us-east-1:1:cluster/") == "arn:aws:ecs:us-east-1:1:cluster/"


def test_the_envelope_and_the_seed_shape_of_one_stop_share_the_key() -> None:
    from_event = mapped(event())
    from_seed = map_ecs_stopped_task(
        EcsStoppedTaskSignal.model_validate(
            {
                "cluster": "FargateCluster",
                "taskArn": AWS_TASK,
                "stoppedAt": "2020-01-23T18:03:11.817Z",
            }
        )
    )
    assert from_event.incident_key == from_seed.incident_key


def test_exit_code_is_the_non_zero_one_of_the_container_that_stopped_the_task() -> None:
    incident = mapped(event())  # log_router exited 0 first, FargateApp exited 1
    assert incident.classification["exit_code"] == 1
    assert incident.classification["exit_container"] == "FargateApp"
    assert incident.title.endswith("(exit code 1)")
    details = incident.evidence[1].payload
    assert (details["exitCode"], details["exitContainer"]) == (1, "FargateApp")
    assert [c["name"] for c in details["containers"]] == ["log_router", "FargateApp"]


def test_essential_container_exiting_zero_is_a_yellow_stop() -> None:
    data = event()
    for container in data["detail"]["containers"]:
        container["exitCode"] = 0
    incident = mapped(data)
    assert incident.severity is Severity.YELLOW
    assert incident.classification["exit_code"] == 0
    assert incident.classification["exit_container"] == "log_router"


@pytest.mark.parametrize("missing", ["absent", "null"])
def test_containers_without_exit_codes_give_no_exit_code(missing: str) -> None:
    data = event()
    for container in data["detail"]["containers"]:
        if missing == "absent":
            del container["exitCode"]
        else:
            container["exitCode"] = None
    incident = mapped(data)
    assert incident.classification["exit_code"] is None
    assert incident.severity is Severity.YELLOW


def test_no_containers_gives_no_exit_code() -> None:
    incident = mapped(event(containers=...))
    assert incident.classification["exit_code"] is None
    assert incident.severity is Severity.YELLOW


@pytest.mark.parametrize(
    ("stop_code", "reason", "severity"),
    [
        ("UserInitiated", "Task stopped by user", Severity.YELLOW),
        ("ServiceSchedulerInitiated", "Scaling activity initiated by deployment", Severity.YELLOW),
        ("SpotInterruption", "Your Spot Task was interrupted.", Severity.YELLOW),
        (
            "ServiceSchedulerInitiated",
            "Task failed ELB health checks in target-group",
            Severity.RED,
        ),
    ],
)
def test_exit_codes_of_a_task_stopped_from_outside_are_not_its_cause(
    stop_code: str, reason: str, severity: Severity
) -> None:
    data = event(stopCode=stop_code, stoppedReason=reason)
    for container in data["detail"]["containers"]:
        container["exitCode"] = 143
    incident = mapped(data)
    assert incident.classification["exit_code"] is None
    assert incident.severity is severity


def test_task_failed_to_start_with_an_error_reason_is_red() -> None:
    incident = mapped(
        event(
            stopCode="TaskFailedToStart",
            stoppedReason="CannotPullContainerError: pull access denied",
            containers=[{"name": "FargateApp", "lastStatus": "STOPPED"}],
        )
    )
    assert incident.severity is Severity.RED


def test_stopped_reason_words_match_in_any_case_in_the_envelope() -> None:
    data = event(stoppedReason="ESSENTIAL CONTAINER CRASHED")
    for container in data["detail"]["containers"]:
        container["exitCode"] = 0
    assert mapped(data).severity is Severity.RED


def test_correlation_keys_include_cluster_task_definition_and_service() -> None:
    incident = mapped(event(group="service:checkout"))
    assert incident.correlation_keys == (
        "ecs_cluster:FargateCluster",
        "ecs_service:checkout",
        f"ecs_task:{AWS_TASK}",
        "ecs_task_definition:arn:aws:ecs:us-west-2:111122223333:task-definition/sample-fargate:1",
    )


@pytest.mark.parametrize(
    ("field", "value"), [("detail-type", "ECS Service Action"), ("source", "aws.ec2")]
)
def test_another_event_type_on_the_ecs_topic_is_unmappable(field: str, value: str) -> None:
    data = event()
    data[field] = value
    with pytest.raises(InvalidSignal) as caught:
        mapped(data)
    assert caught.value.reason is RejectReason.UNMAPPABLE


@pytest.mark.parametrize("field", ["stoppedAt", "taskArn", "clusterArn"])
def test_a_stopped_event_without_what_the_key_needs_is_unmappable(field: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        mapped(event(**{field: ...}))
    assert caught.value.reason is RejectReason.UNMAPPABLE
    assert f"detail.{field}" in caught.value.message


def test_secrets_in_task_overrides_never_reach_the_evidence() -> None:
    overrides = {
        "containerOverrides": [
            {
                "name": "FargateApp",
                "environment": [
                    {"name": "DB_PASSWORD", "value": "hunter2"},
                    {"name": "STAGE", "value": "prod"},
                ],
            }
        ]
    }
    incident = mapped(event(overrides=overrides))
    stored = json.dumps([dict(e.payload) for e in incident.evidence])
    assert "hunter2" not in stored and '"prod"' in stored


def test_envelope_mapping_is_deterministic_and_leaves_the_event_alone() -> None:
    data = event()
    before = copy.deepcopy(data)
    assert mapped(data) == mapped(data)
    assert data == before
