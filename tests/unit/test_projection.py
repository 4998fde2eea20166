"""The incident fold: commutative, severity never lowered, descriptive columns from the lead."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_worker.core import canonical
from ingest_worker.core.projection import SNAPSHOT_FIELDS, IncidentState, advance, json_value, start
from ingest_worker.core.values import Severity
from tests.factories import incident_input

KEY = "ecs_stopped:prod:arn:task/1:2024-01-01T00:00:00Z"
ID = canonical.incident_id(KEY)


def fold(signals: list[Any]) -> IncidentState:
    return functools.reduce(advance, signals[1:], start(signals[0], ID))


distinct_signals = st.lists(
    st.builds(
        lambda n, sev, at, keys: incident_input(
            KEY, signal=str(n), severity=sev, at=at, title=f"title {n}", env=f"env{n % 2}",
            correlation_keys=tuple(keys),
        ),
        n=st.integers(0, 1000), sev=st.sampled_from(Severity), at=st.integers(0, 5),
        keys=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3),
    ),
    min_size=1, max_size=8, unique_by=lambda s: s.signal_sha256,
)  # fmt: skip


@given(distinct_signals, st.randoms())
def test_the_fold_does_not_depend_on_signal_order(signals: list[Any], rng: Any) -> None:
    shuffled = signals[:]
    rng.shuffle(shuffled)
    assert fold(shuffled) == fold(signals)
    assert fold(shuffled).snapshot() == fold(signals).snapshot()


@given(distinct_signals)
def test_the_fold_counts_and_bounds(signals: list[Any]) -> None:
    state = fold(signals)
    assert state.occurrence_count == state.last_seq == len(signals)
    assert state.first_seen_at == min(s.signal_time for s in signals)
    assert state.last_seen_at == max(s.signal_time for s in signals)
    assert state.severity == max(signals, key=lambda s: s.severity.rank).severity
    assert list(state.correlation_keys) == sorted({k for s in signals for k in s.correlation_keys})
    lead = max(signals, key=lambda s: (s.severity.rank, s.signal_time, s.signal_sha256))
    assert (state.title, state.env, state.lead_signal_sha256) == (
        lead.title, lead.env, lead.signal_sha256,
    )  # fmt: skip


def test_a_yellow_signal_never_lowers_a_red_incident() -> None:
    red = incident_input(KEY, signal="r", severity=Severity.RED, at=0)
    yellow = incident_input(KEY, signal="y", severity=Severity.YELLOW, at=100)
    state = fold([red, yellow])
    assert (state.severity, state.title, state.last_seen_at) == (
        "RED", red.title, yellow.signal_time,
    )  # fmt: skip


def test_snapshot_is_json_with_canonical_timestamps() -> None:
    snapshot = start(incident_input(KEY, at=0), ID).snapshot()
    assert tuple(snapshot) == SNAPSHOT_FIELDS
    assert snapshot["id"] == str(ID)
    assert snapshot["first_seen_at"] == "2024-01-01T00:00:00Z"
    assert snapshot["status"] == "OPEN"
    canonical.canonical_json(snapshot)


def test_a_signal_of_another_incident_is_refused() -> None:
    with pytest.raises(ValueError, match="applied to"):
        advance(start(incident_input(KEY), ID), incident_input("other"))


def test_a_signal_time_without_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        start(incident_input(KEY, at=datetime(2024, 1, 1)), ID)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": (1, 2.5)}, {"a": [1, 2.5]}),
        (-0.0, 0.0),
        (1e16, 10**16),
        (1e300, 10**300),
        (1.5e-7, 1.5e-7),
        ({"nested": {"x": None, "y": True}}, {"nested": {"x": None, "y": True}}),
    ],
)
def test_json_value_survives_a_jsonb_round_trip(value: Any, expected: Any) -> None:
    assert canonical.canonical_json(json_value(value)) == canonical.canonical_json(expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: "x"}, {"a": object()}])
def test_json_value_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        json_value(value)


def test_timestamps_are_normalized_to_utc() -> None:
    state = start(incident_input(KEY, at=0), ID)
    assert state.first_seen_at.tzinfo == UTC
