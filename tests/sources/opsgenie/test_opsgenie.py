"""Opsgenie webhooks (SPEC §8): actions → effects, identity, priority forms, epoch units."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, Severity, SourceTransition
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.opsgenie import SOURCE
from tests.sources import FIXTURES


def action(name: str = "create-official.json", **alert: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data["alert"] = {**data["alert"], **alert}
    return data


def decode(data: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(SOURCE, json.dumps(data).encode(), max_bytes=1 << 20)


def test_one_lifecycle_shares_one_key() -> None:
    effects = [
        decode(action(name))[0]
        for name in (
            "create-official.json",
            "acknowledge.json",
            "unacknowledge.json",
            "addnote.json",
            "close.json",
        )
    ]
    create, ack, unack, note, close = effects
    assert isinstance(create, IncidentInput)
    assert isinstance(close, Recovery)
    assert [t.verb for t in (ack, unack, note) if isinstance(t, SourceTransition)] == [
        "acknowledge",
        "unacknowledge",
        "annotate",
    ]
    assert {create.incident_key, ack.incident_key, note.incident_key, close.scope} == {
        "opsgenie:aliastest"
    }
    assert note.note == "note to test alert"
    assert ack.actor == "fili@ifountain.com"


def test_create_uses_created_at_in_milliseconds_others_updated_at_in_nanoseconds() -> None:
    [create] = decode(action())
    [ack] = decode(action("acknowledge.json"))
    assert create.signal_time.timestamp() == 1420452191.104
    assert ack.signal_time.isoformat() == "2015-01-05T10:03:44.764002+00:00"


@pytest.mark.parametrize(
    ("priority", "severity"),
    [
        ("P1", Severity.RED),
        ("p2", Severity.RED),
        (1, Severity.RED),
        (3, Severity.YELLOW),
        ("P5", Severity.YELLOW),
        (..., Severity.YELLOW),
    ],
)
def test_priority_as_string_integer_or_absent(priority: object, severity: Severity) -> None:
    data = action()
    if priority is not ...:
        data["alert"]["priority"] = priority
    [item] = decode(data)
    assert item.severity is severity


@pytest.mark.parametrize("alias", ["", None])
def test_an_empty_alias_falls_back_to_the_alert_id(alias: str | None) -> None:
    [item] = decode(action(alias=alias))
    assert item.incident_key == "opsgenie:052652ac-5d1c-464a-812a-7dd18bbfba8c"


@pytest.mark.parametrize(
    "alert", [{"updatedAt": 1420452193166002000.0}, {"createdAt": "1420452191104.0"}]
)
def test_non_integer_epochs_are_refused(alert: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignal) as caught:
        decode(action(**alert))
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION


def test_a_long_note_is_kept_truncated() -> None:
    [item] = decode(action("addnote.json", note="x" * 6000))
    assert isinstance(item, SourceTransition)
    assert item.note is not None and len(item.note) == 5000
