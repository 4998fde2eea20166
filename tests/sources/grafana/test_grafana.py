"""Grafana alerting notifications: what differs from Alertmanager's (the shared group rules are
tested in tests/sources/alertmanager/): partial groups, Grafana 12's resolved notifications, and
alerts without a start time (its test notifications), which take the record's time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, RejectedPart
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.grafana import GrafanaNotification, map_notification
from tests.sources import FIXTURES

MAX = 1_048_576
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2026, 3, 1, 9, 30, 15, 250_000, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def decode(
    source: str, value: dict[str, Any], record_time: datetime | None = None
) -> tuple[Any, ...]:
    return decode_record(source, json.dumps(value).encode(), max_bytes=MAX, record_time=record_time)


@PROPERTIES
@given(bad=st.sets(st.integers(0, 2), max_size=3))
def test_invalid_alerts_are_rejected_parts_and_the_others_apply(bad: set[int]) -> None:
    group = fixture("mixed_v9.json")
    for index in bad:
        group["alerts"][index]["startsAt"] = "not a time"
    if len(bad) == 3:
        with pytest.raises(InvalidSignal) as caught:
            decode("grafana", group)
        assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
        assert "not a time" not in caught.value.message
        return
    effects = decode("grafana", group)
    rejected = {e.index for e in effects if isinstance(e, RejectedPart)}
    assert rejected == bad
    assert all("not a time" not in e.message for e in effects if isinstance(e, RejectedPart))
    assert len(effects) == 3


def test_grafana_12_resolved_notifications_still_resolve_the_key() -> None:
    [plain] = decode("grafana", fixture("resolved_v9.json"))
    [grafana12] = decode("grafana", fixture("DERIVED_resolved_grafana12_startsAt_eq_endsAt.json"))
    assert isinstance(plain, Recovery) and isinstance(grafana12, Recovery)
    assert (plain.scope, plain.signal_time) == (grafana12.scope, grafana12.signal_time)


@pytest.mark.parametrize("starts_at", ["0001-01-01T00:00:00Z", "", None, "absent"])
def test_a_firing_alert_without_a_start_time_takes_the_record_time(starts_at: str | None) -> None:
    group = fixture("firing_values_v11.json")
    alert = group["alerts"][0]
    if starts_at == "absent":
        del alert["startsAt"]
    else:
        alert["startsAt"] = starts_at
    [item] = decode("grafana", group, RECEIVED)
    assert isinstance(item, IncidentInput)
    assert item.signal_time == RECEIVED
    [real] = decode("grafana", fixture("firing_values_v11.json"), RECEIVED)
    assert real.signal_time != RECEIVED  # an alert's own start wins
    assert item.incident_key == real.incident_key


def test_the_test_notification_is_one_signal_whenever_it_is_received() -> None:
    test_alert = fixture("firing_startsAt_zero_notifier_alerting.json")
    [first] = decode("grafana", test_alert, RECEIVED)
    [again] = decode("grafana", test_alert, datetime(2026, 3, 2, tzinfo=UTC))
    assert first.signal_time.year == 2026
    assert first.signal_sha256 == again.signal_sha256  # a re-sent copy is a duplicate


def test_a_resolved_alert_with_the_zero_start_resolves_at_its_end() -> None:
    group = fixture("resolved_v9.json")
    group["alerts"][0]["startsAt"] = "0001-01-01T00:00:00Z"
    [item] = decode("grafana", group, RECEIVED)
    assert isinstance(item, Recovery)
    assert item.signal_time == datetime(2022, 6, 17, 0, 51, 24, 67337, tzinfo=UTC)


def test_without_a_record_time_a_start_less_alert_is_a_rejected_part() -> None:
    notification = GrafanaNotification.model_validate(
        fixture("firing_startsAt_zero_notifier_alerting.json")
    )
    [item] = map_notification(notification)
    assert isinstance(item, RejectedPart)
    assert "startsAt" in item.message
