"""Alertmanager and Grafana group notifications (hypothesis): one signal per alert, identified by
the alert alone; partial groups; Alertmanager's own fingerprint for alerts without one."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.values import IncidentInput, Recovery, RejectedPart, Severity
from ingest_worker.sources.alertmanager import label_fingerprint
from ingest_worker.sources.decode import decode_record
from tests.sources import FIXTURES

MAX = 1_048_576
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def decode(source: str, value: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(source, json.dumps(value).encode(), max_bytes=MAX)


@pytest.mark.parametrize(
    "name", ["firing_endsAt_zero_am0.21.json", "resolved.json"], ids=lambda n: n.split(".")[0]
)
def test_the_derived_fingerprint_is_alertmanagers_own(name: str) -> None:
    alert = fixture(name)["alerts"][0]
    assert label_fingerprint(alert["labels"]) == alert["fingerprint"]


def test_an_alert_without_fingerprint_gets_the_key_alertmanager_would_give() -> None:
    group = fixture("firing_endsAt_zero_am0.21.json")
    legacy = copy.deepcopy(group)
    del legacy["alerts"][0]["fingerprint"]
    [current] = decode("alertmanager", group)
    [old] = decode("alertmanager", legacy)
    assert isinstance(current, IncidentInput) and isinstance(old, IncidentInput)
    assert old.incident_key == current.incident_key == "alertmanager:8a07086b74f3ba78"


labels = st.dictionaries(
    st.text("abcdefghij_", min_size=1, max_size=8), st.text(max_size=12), max_size=6
)


@PROPERTIES
@given(labels, st.randoms(use_true_random=False))
def test_the_fingerprint_ignores_label_order(label_set: dict[str, str], rnd: Any) -> None:
    items = list(label_set.items())
    rnd.shuffle(items)
    assert label_fingerprint(dict(items)) == label_fingerprint(label_set)


@PROPERTIES
@given(
    receiver=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    group_key=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    others=st.lists(st.sampled_from([0, 1]), max_size=4),
    position=st.integers(0, 4),
)
def test_an_alert_is_the_same_signal_in_any_group_composition(
    receiver: str, group_key: str, others: list[int], position: int
) -> None:
    base = fixture("DERIVED_mixed_firing_resolved.json")
    [reference, _] = decode("alertmanager", base)
    alerts = [
        base["alerts"][1] if i else _variant(base["alerts"][0], n) for n, i in enumerate(others)
    ]
    alerts.insert(min(position, len(alerts)), base["alerts"][0])
    group = {**base, "receiver": receiver, "groupKey": group_key, "alerts": alerts}
    effects = decode("alertmanager", group)
    assert len(effects) == len(alerts)
    same = [
        e
        for e in effects
        if isinstance(e, IncidentInput) and e.incident_key == reference.incident_key
    ]
    assert reference in same


def _variant(alert: dict[str, Any], n: int) -> dict[str, Any]:
    """Another alert: another fingerprint and description."""
    return {**alert, "fingerprint": f"{n:016x}", "annotations": {"summary": f"other {n}"}}


def test_a_resolved_alert_resolves_the_key_its_firing_twin_opened() -> None:
    [trigger] = decode("alertmanager", fixture("legacy_firing_no_fingerprint_offset.json"))
    [recovery] = decode("alertmanager", fixture("legacy_resolved_no_fingerprint_offset.json"))
    assert isinstance(trigger, IncidentInput) and isinstance(recovery, Recovery)
    assert recovery.scope == trigger.recovery_scope
    assert recovery.signal_time > trigger.signal_time


def test_a_forecast_end_of_a_firing_alert_is_not_part_of_its_identity() -> None:
    group = fixture("legacy_firing_no_fingerprint_offset.json")
    later = copy.deepcopy(group)
    later["alerts"][0]["endsAt"] = "2018-11-04T22:52:58.283995108+01:00"
    assert decode("alertmanager", group) == decode("alertmanager", later)


@pytest.mark.parametrize(
    ("value", "severity"),
    [("critical", Severity.RED), ("PAGE", Severity.RED), ("High", Severity.RED),
     ("error", Severity.RED), ("warning", Severity.YELLOW), ("major", Severity.YELLOW),
     (None, Severity.YELLOW)],
)  # fmt: skip
@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
def test_severity_follows_the_severity_label(
    source: str, value: str | None, severity: Severity
) -> None:
    name = (
        "firing_endsAt_zero_am0.21.json" if source == "alertmanager" else "firing_values_v11.json"
    )
    group = fixture(name)
    group["alerts"] = group["alerts"][:1]
    group["alerts"][0]["labels"].pop("severity", None)
    if value is not None:
        group["alerts"][0]["labels"]["severity"] = value
    [item] = decode(source, group)
    assert isinstance(item, IncidentInput)
    assert item.severity is severity
    assert item.classification["source_severity"] == value


def test_a_credential_in_a_label_used_as_key_rejects_only_that_alert() -> None:
    group = fixture("firing_two_alerts.json")
    group["alerts"][1]["labels"]["job"] = "ghp_" + "a" * 36
    first, second = decode("alertmanager", group)
    assert isinstance(first, IncidentInput)
    assert isinstance(second, RejectedPart) and "ghp_" not in second.message


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
@pytest.mark.parametrize(
    ("annotations", "title"),
    [
        ({"summary": "S", "title": "T", "description": "D"}, "S"),
        ({"title": "T", "description": "D"}, "T"),
        ({"summary": "  ", "title": "T", "description": "D"}, "T"),
        ({"description": "D"}, "D"),
        ({"title": "", "runbook_url": "https://runbooks.example/x"}, None),
    ],
)
def test_the_title_is_summary_then_title_then_description_then_alertname(
    source: str, annotations: dict[str, str], title: str | None
) -> None:
    name = "firing_two_alerts.json" if source == "alertmanager" else "firing_values_v11.json"
    group = fixture(name)
    group["alerts"] = group["alerts"][:1]
    group["alerts"][0]["annotations"] = annotations
    [item] = decode(source, group)
    assert isinstance(item, IncidentInput)
    assert item.title == (title or group["alerts"][0]["labels"]["alertname"])
