"""Datadog webhook bodies (SPEC §8): identity, transitions, severity, timestamps, secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.redaction import REDACTED
from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.datadog import SOURCE
from ingest_worker.sources.decode import decode_record
from tests.sources import FIXTURES


def body(name: str = "template-triggered.json", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def decode(data: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(SOURCE, json.dumps(data).encode(), max_bytes=1 << 20)


def incident(data: dict[str, Any]) -> IncidentInput:
    [item] = decode(data)
    assert isinstance(item, IncidentInput)
    return item


@pytest.mark.parametrize(
    "transition",
    [
        "Triggered",
        "Re-Triggered",
        "Warn",
        "Re-Warn",
        "No Data",
        "Re-No Data",
        "Renotify",
        "triggered",
    ],
)
def test_firing_transitions_trigger(transition: str) -> None:
    assert incident(body(alert_transition=transition)).incident_key.startswith("datadog:")


def test_recovered_resolves_the_key_the_trigger_opened() -> None:
    opened = incident(body())
    [recovery] = decode(body("template-recovered.json"))
    assert isinstance(recovery, Recovery)
    assert recovery.scope == opened.incident_key == opened.recovery_scope
    assert recovery.signal_time > opened.signal_time


def test_quoted_and_unquoted_templates_are_the_same_signal() -> None:
    quoted = incident(body(alert_id="221164084", date="1759343824000"))
    unquoted = incident(body(alert_id=221164084, date=1759343824000))
    assert quoted.signal_sha256 == unquoted.signal_sha256
    assert quoted.signal_time == unquoted.signal_time


def test_without_cycle_key_the_key_is_monitor_and_scope() -> None:
    item = incident(body(alert_cycle_key=..., alert_scope=" env:prod, host:a "))
    assert item.incident_key == "datadog:221164084:env:prod, host:a"
    assert item.env == "prod"
    assert {"env:prod", "host:a", "monitor:221164084"} <= set(item.correlation_keys)


@pytest.mark.parametrize(
    ("priority", "alert_type", "severity"),
    [
        ("P1", "warning", Severity.RED),
        ("P2", "info", Severity.RED),
        ("P3", "error", Severity.RED),
        ("P3", "warning", Severity.YELLOW),
        ("", "warning", Severity.YELLOW),
        ("", "", Severity.YELLOW),
    ],
)
def test_severity(priority: str, alert_type: str, severity: Severity) -> None:
    item = incident(body(alert_priority=priority, alert_type=alert_type))
    assert item.severity is severity
    assert item.classification["error_code"] == "DATADOG_ALERT"


def test_date_falls_back_to_last_updated() -> None:
    item = incident(body(date=..., last_updated="1759343825000"))
    assert item.signal_time.timestamp() == 1759343825


@pytest.mark.parametrize("date", [1759343824000.0, "1759343824000.5", True, "-5"])
def test_a_date_that_is_not_an_integer_is_refused(date: object) -> None:
    with pytest.raises(InvalidSignal) as caught:
        decode(body(date=date))
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION


def test_a_token_in_the_link_is_redacted_from_the_evidence() -> None:
    item = incident(body(link="https://app.datadoghq.com/monitors/1?api_key=abcdef0123456789"))
    link = next(e for e in item.evidence if e.kind == "link")
    assert "abcdef0123456789" not in json.dumps(link.payload)
    assert REDACTED in json.dumps(link.payload)
