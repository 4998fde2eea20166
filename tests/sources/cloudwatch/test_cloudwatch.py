"""CloudWatch alarm state changes via EventBridge (SPEC §8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.cloudwatch import SOURCE
from ingest_worker.sources.decode import decode_record
from tests.sources import FIXTURES

ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh"


def event(name: str = "alarm-single-metric.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def decode(data: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(SOURCE, json.dumps(data).encode(), max_bytes=1 << 20)


def test_alarm_then_ok_open_and_resolve_one_key() -> None:
    [alarm] = decode(event())
    [ok] = decode(event("edge-ok-single-metric.json"))
    assert isinstance(alarm, IncidentInput) and isinstance(ok, Recovery)
    assert alarm.incident_key == ok.scope == f"cloudwatch:{ARN}"
    assert alarm.severity is Severity.RED
    assert ok.signal_time > alarm.signal_time


def test_the_alarm_arn_of_the_detail_stands_in_for_resources() -> None:
    data = event()
    data["resources"] = []
    data["detail"]["alarmArn"] = ARN
    [alarm] = decode(data)
    assert alarm.incident_key == f"cloudwatch:{ARN}"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2019-10-02T17:04:40.989+0000", "2019-10-02T17:04:40.989000+00:00"),
        ("2019-10-02T19:04:40.989+02:00", "2019-10-02T17:04:40.989000+00:00"),
        ("2019-10-02T17:04:40Z", "2019-10-02T17:04:40+00:00"),
    ],
)
def test_state_timestamps_with_or_without_colon(timestamp: str, expected: str) -> None:
    data = event()
    data["detail"]["state"]["timestamp"] = timestamp
    [alarm] = decode(data)
    assert alarm.signal_time.isoformat() == expected


def test_a_naive_timestamp_is_refused() -> None:
    data = event()
    data["detail"]["state"]["timestamp"] = "2019-10-02T17:04:40.989"
    with pytest.raises(InvalidSignal) as caught:
        decode(data)
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
