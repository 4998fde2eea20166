"""Event construction and the hash chain: pure, deterministic, recomputable by any reader."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_worker.core import canonical
from ingest_worker.core.events import (
    EVENT_CREATED,
    EVENT_UPDATED,
    GENESIS_HASH,
    AddedEvidence,
    apply_changes,
    build_event,
    changes_between,
    event_hash,
    same_json,
)
from ingest_worker.core.projection import SNAPSHOT_FIELDS, IncidentState, advance, start
from ingest_worker.core.values import Severity
from tests.factories import event_body_for_publish, incident_input

KEY = "verification:deploy-1:sha256-abc"
ID = canonical.incident_id(KEY)


def states(*signals: Any) -> list[IncidentState]:
    state = start(signals[0], ID)
    result = [state]
    for signal in signals[1:]:
        state = advance(state, signal)
        result.append(state)
    return result


def created() -> Any:
    signal = incident_input(KEY, signal="a", at=10)
    [state] = states(signal)
    return build_event(None, state.snapshot(), occurred_at=signal.signal_time,
                       signal_sha256=signal.signal_sha256, prev_hash=GENESIS_HASH)  # fmt: skip


def test_first_event_is_created_with_seq_1_and_the_genesis_prev_hash() -> None:
    event = created()
    assert (event.type, event.seq, event.prev_hash) == (EVENT_CREATED, 1, GENESIS_HASH)
    assert event.id == canonical.event_id(ID, 1)
    assert event.payload["id"] == str(event.id)
    assert event.payload["incident_id"] == str(ID)
    assert event.payload["incident_key"] == KEY
    assert event.payload["occurred_at"] == "2024-01-01T00:00:10Z"
    assert event.payload["snapshot"]["status"] == "OPEN"
    assert "hash" not in event.payload
    assert event.body == {**event.payload, "hash": event.hash}


def test_hash_is_sha256_of_the_canonical_payload_followed_by_prev_hash() -> None:
    event = created()
    text = json.dumps(event.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event.payload_json == text
    assert event.hash == hashlib.sha256((text + GENESIS_HASH).encode("utf-8")).hexdigest()
    assert event.hash == event_hash(json.loads(text), GENESIS_HASH)


def test_the_hash_chains_on_prev_hash() -> None:
    event = created()
    other = build_event(
        None, event.payload["snapshot"], occurred_at=event.occurred_at,
        signal_sha256=event.payload["signal_sha256"], prev_hash="f" * 64,
    )  # fmt: skip
    assert other.payload_json != event.payload_json  # prev_hash is in the body too
    assert other.hash != event.hash


def test_construction_is_deterministic_and_free_of_wall_clock() -> None:
    assert created() == created()


def test_occurred_at_is_the_canonical_utc_signal_time() -> None:
    moment = datetime(2024, 1, 1, 1, 0, 0, 500000, tzinfo=timezone(timedelta(hours=1)))
    signal = incident_input(KEY, at=moment)
    event = build_event(None, start(signal, ID).snapshot(), occurred_at=moment,
                        signal_sha256=signal.signal_sha256, prev_hash=GENESIS_HASH)  # fmt: skip
    assert event.payload["occurred_at"] == "2024-01-01T00:00:00.5Z"
    assert event.payload["snapshot"]["first_seen_at"] == "2024-01-01T00:00:00.5Z"


def test_updated_event_lists_only_what_changed() -> None:
    first = incident_input(KEY, signal="a", at=10, severity=Severity.RED)
    second = incident_input(KEY, signal="b", at=5, severity=Severity.YELLOW,
                            correlation_keys=("deploy:deploy-1", "env:prod"))  # fmt: skip
    before, after = states(first, second)
    evidence = [AddedEvidence("f" * 64, "log", "b"), AddedEvidence("0" * 64, "log", "a")]
    changes = changes_between(before.snapshot(), after.snapshot(), evidence)
    assert changes == {
        "first_seen_at": {"from": "2024-01-01T00:00:10Z", "to": "2024-01-01T00:00:05Z"},
        "occurrence_count": {"from": 1, "to": 2},
        "last_seq": {"from": 1, "to": 2},
        "correlation_keys_added": ["env:prod"],
        "evidence_added": [
            {"sha256": "0" * 64, "kind": "log", "ref": "a"},
            {"sha256": "f" * 64, "kind": "log", "ref": "b"},
        ],
    }
    event = build_event(before.snapshot(), after.snapshot(), occurred_at=second.signal_time,
                        signal_sha256=second.signal_sha256, prev_hash="a" * 64)  # fmt: skip
    assert (event.type, event.seq, event.prev_hash) == (EVENT_UPDATED, 2, "a" * 64)


def test_created_event_changes_hold_the_added_keys_and_evidence_only() -> None:
    [state] = states(incident_input(KEY, correlation_keys=("b", "a")))
    changes = changes_between(None, state.snapshot(), [AddedEvidence("1" * 64, "k", "r")])
    assert changes == {
        "correlation_keys_added": ["a", "b"],
        "evidence_added": [{"sha256": "1" * 64, "kind": "k", "ref": "r"}],
    }


signal_specs = st.lists(
    st.tuples(st.sampled_from(Severity), st.integers(0, 50), st.sets(st.sampled_from("abc"))),
    min_size=2, max_size=8, unique_by=lambda t: t[1],
)  # fmt: skip


@given(signal_specs)
def test_applying_changes_rebuilds_every_next_snapshot(specs: list[Any]) -> None:
    signals = [
        incident_input(KEY, signal=str(n), severity=sev, at=at, title=f"t{n}",
                       correlation_keys=tuple(sorted(keys)))
        for n, (sev, at, keys) in enumerate(specs)
    ]  # fmt: skip
    snapshots = [s.snapshot() for s in states(*signals)]
    for before, after in itertools.pairwise(snapshots):
        assert apply_changes(before, changes_between(before, after)) == after
        assert list(after) == list(SNAPSHOT_FIELDS)


def test_same_json_tells_apart_what_canonical_json_tells_apart() -> None:
    assert same_json({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not same_json(1, 1.0)
    assert not same_json(True, 1)
    assert not same_json({"a": 1}, {"a": 1.0})
    assert not same_json(None, "")


@pytest.mark.parametrize("decode", [False, True])
def test_publish_body_from_a_stored_row(decode: bool) -> None:
    event = created()
    row = {"payload": event.payload if decode else event.payload_json, "hash": event.hash}
    assert event_body_for_publish(row) == event.body


def test_timestamps_are_utc() -> None:
    assert created().occurred_at.astimezone(UTC) == datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)
