"""New Relic workflow webhooks (SPEC §8): state → effect, acknowledgement, severity, timestamps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, Severity, SourceTransition
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.newrelic import SOURCE
from tests.sources import FIXTURES


def issue(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / "activated-default-payload.json").read_text(encoding="utf-8")
    )
    data.update(changes)
    return data


def decode_all(data: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(SOURCE, json.dumps(data).encode(), max_bytes=1 << 20)


def decode(data: dict[str, Any]) -> Any:
    [item] = decode_all(data)
    return item


@pytest.mark.parametrize("state", ["CREATED", "ACTIVATED"])
def test_created_and_activated_trigger_at_created_at(state: str) -> None:
    item = decode(issue(state=state))
    assert isinstance(item, IncidentInput)
    assert item.incident_key == "newrelic:c5faa7e6-7b54-402d-af79-f99601e0278c"
    assert item.signal_time.timestamp() == 1713755131.352


def test_closed_resolves_the_issue_at_updated_at() -> None:
    opened = decode(issue())
    closed = decode(issue(state="CLOSED", trigger="INCIDENT_CLOSED", updatedAt=1713770308699))
    assert isinstance(closed, Recovery)
    assert closed.scope == opened.incident_key
    assert closed.signal_time > opened.signal_time


@pytest.mark.parametrize(
    "changes",
    [
        {"trigger": "USER_ACTION"},
        {"isAcknowledged": True},
        {"isAcknowledged": "true"},
        {"acknowledgedBy": "pieter@example.com"},
        {"acknowledgedAt": 1713770077412},
    ],
)
def test_acknowledgements_open_the_issue_then_acknowledge_it(changes: dict[str, Any]) -> None:
    trigger, item = decode_all(issue(**changes))
    assert isinstance(trigger, IncidentInput)  # an issue never seen CREATED is opened first
    assert trigger.signal_time == decode(issue()).signal_time  # the issue's createdAt
    assert isinstance(item, SourceTransition)
    assert item.verb == "acknowledge"
    assert item.incident_key == trigger.incident_key
    assert item.incident_key == "newrelic:c5faa7e6-7b54-402d-af79-f99601e0278c"
    assert item.signal_time > trigger.signal_time  # updatedAt, after createdAt


def test_an_explicit_not_acknowledged_flag_keeps_a_trigger() -> None:
    assert isinstance(decode(issue(isAcknowledged=False)), IncidentInput)


@pytest.mark.parametrize(
    ("priority", "severity"),
    [
        ("CRITICAL", Severity.RED),
        ("HIGH", Severity.RED),
        ("MEDIUM", Severity.YELLOW),
        ("LOW", Severity.YELLOW),
        (None, Severity.YELLOW),
    ],
)
def test_severity(priority: str | None, severity: Severity) -> None:
    item = decode(issue(priority=priority))
    assert item.severity is severity
    assert item.classification["source_severity"] == priority


@pytest.mark.parametrize("flag", ["false", False])
def test_is_correlated_as_string_or_boolean_is_the_same_signal(flag: object) -> None:
    assert decode(issue(isCorrelated=flag)).signal_sha256 == decode(issue()).signal_sha256


@pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
def test_float_epochs_are_refused(field: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        decode(issue(**{field: 1713755131352.5}))
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
