"""PagerDuty (Webhooks v3, Events API v2): the incident id of notes, the routing key never leaves
the mapper, signal times of events without a payload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, SourceTransition
from ingest_worker.sources.decode import decode_record
from tests.sources import FIXTURES

MAX = 1_048_576
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def decode(value: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record("pagerduty", json.dumps(value).encode(), max_bytes=MAX)


def test_a_note_annotates_its_incident_not_a_note_incident() -> None:
    [note] = decode(fixture("webhook_incident_annotated.json"))
    assert isinstance(note, SourceTransition)
    assert note.incident_key == "pagerduty:Q3B15VLMF3ASBD"
    assert note.verb == "annotate" and note.note


@pytest.mark.parametrize(
    ("name", "verb"),
    [("webhook_incident_acknowledged.json", "acknowledge"),
     ("webhook_incident_unacknowledged.json", "unacknowledge"),
     ("webhook_incident_reopened.json", "reopen")],
)  # fmt: skip
def test_source_transitions_keep_the_incident_key(name: str, verb: str) -> None:
    event = fixture(name)
    [item] = decode(event)
    assert isinstance(item, SourceTransition) and item.verb == verb
    assert item.incident_key == f"pagerduty:{event['event']['data']['id']}"


def test_a_long_note_is_cut_to_the_note_limit() -> None:
    event = fixture("webhook_incident_annotated.json")
    event["event"]["data"]["content"] = "x" * 20_000
    [note] = decode(event)
    assert note.note is not None and len(note.note) == 5000


@PROPERTIES
@given(key=st.text("abcdef0123456789", min_size=8, max_size=40), action=st.sampled_from(
    ["trigger", "acknowledge", "resolve"]))  # fmt: skip
def test_the_routing_key_never_leaves_the_mapper(key: str, action: str) -> None:
    event = fixture("events_trigger_openapi_critical.json")
    if action != "trigger":
        event = {
            "dedup_key": "srv01/mysql",
            "event_action": action,
            "received_at": "2024-01-01T00:00:00Z",
        }
    event["routing_key"] = "R" + key
    effects = decode(event)
    assert effects
    assert "R" + key not in repr(effects)


def test_a_dedup_key_equal_to_the_routing_key_is_refused() -> None:
    event = fixture("events_trigger_openapi_critical.json")
    event["dedup_key"] = event["routing_key"]
    with pytest.raises(InvalidSignal) as caught:
        decode(event)
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
    assert event["routing_key"] not in caught.value.message


def test_the_payload_timestamp_wins_and_received_at_then_leaves_the_identity() -> None:
    event = fixture("events_trigger_openapi_critical.json")
    [plain] = decode(event)
    [retried] = decode({**event, "received_at": "2015-07-17T08:45:00Z"})
    assert isinstance(plain, IncidentInput)
    assert plain == retried


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_events_without_payload_need_received_at(action: str) -> None:
    event = {"routing_key": "k" * 32, "dedup_key": "d-1", "event_action": action}
    with pytest.raises(InvalidSignal) as caught:
        decode(event)
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
    assert "received_at" in caught.value.message
    [item] = decode({**event, "received_at": "2024-01-01T00:00:00+0000"})
    assert isinstance(item, Recovery if action == "resolve" else SourceTransition)
    assert item.signal_time.isoformat() == "2024-01-01T00:00:00+00:00"
