"""The incident list's cursors and page bounds (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ingest_worker.store.cursors import (
    BadReadRequest,
    IncidentFilter,
    decode_cursor,
    encode_cursor,
    page_bounds,
)

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ID = uuid.UUID("6f1c2a52-3d4b-5e8f-9a0b-1c2d3e4f5a6b")
ROW = {"id": ID, "last_seen_at": AT, "created_at": AT, "updated_at": AT, "severity": "RED"}


@pytest.mark.parametrize("sort", ["-lastSeen", "-created", "-updated", "-severity"])
def test_a_cursor_gives_back_the_key_of_the_row_it_was_made_from(sort: str) -> None:
    flt = IncidentFilter(sort=sort, statuses=("OPEN",))
    key = decode_cursor(flt, encode_cursor(flt, ROW))
    assert key[-2:] == (AT, ID)
    if sort == "-severity":
        assert key[0] == 2


def test_the_order_of_repeated_values_does_not_change_the_list() -> None:
    one = IncidentFilter(statuses=("OPEN", "RESOLVED"), envs=("a", "b"))
    other = IncidentFilter(statuses=("RESOLVED", "OPEN", "OPEN"), envs=("b", "a"))
    assert one.digest() == other.digest()
    assert decode_cursor(other, encode_cursor(one, ROW)) == (AT, ID)


@pytest.mark.parametrize(
    "other",
    [
        IncidentFilter(statuses=("OPEN",), q="db"),
        IncidentFilter(statuses=("OPEN",), sort="-created"),
        IncidentFilter(statuses=("OPEN",), since=AT),
        IncidentFilter(statuses=("OPEN",), since=AT, time_field="created"),
    ],
)
def test_a_cursor_of_other_filters_is_a_mismatch(other: IncidentFilter) -> None:
    cursor = encode_cursor(IncidentFilter(statuses=("OPEN",)), ROW)
    with pytest.raises(BadReadRequest) as refused:
        decode_cursor(other, cursor)
    assert refused.value.reason == "cursor_mismatch"


@pytest.mark.parametrize("cursor", ["", "!!!", "e30", "WzIsIi1sYXN0U2VlbiIsIngiXQ", "a" * 600])
def test_a_cursor_not_made_here_is_invalid(cursor: str) -> None:
    with pytest.raises(BadReadRequest) as refused:
        decode_cursor(IncidentFilter(), cursor)
    assert refused.value.reason == "invalid_cursor"


def test_until_and_since_on_the_sort_column_bound_the_index_walk() -> None:
    since, until = AT - timedelta(hours=1), AT
    upper_time, upper_id, lower = page_bounds(IncidentFilter(since=since, until=until), None)
    assert (upper_time, upper_id, lower) == (until, uuid.UUID(int=0), since)
    # A cursor further down wins over until; a cursor above until does not.
    below = (AT - timedelta(minutes=5), ID)
    assert page_bounds(IncidentFilter(since=since, until=until), below)[:2] == list(below)
    above = (AT + timedelta(minutes=5), ID)
    assert page_bounds(IncidentFilter(since=since, until=until), above)[0] == until
    # On another column they are filters, not bounds.
    other = page_bounds(IncidentFilter(since=since, until=until, time_field="created"), None)
    assert other[0].year == 9999 and other[2].year == 1


@pytest.mark.parametrize(
    "values", [{"sort": "lastSeen"}, {"time_field": "seen"}, {"since": datetime(2026, 1, 1)}]
)
def test_a_bad_sort_time_field_or_naive_time_is_refused(values: dict[str, object]) -> None:
    with pytest.raises(BadReadRequest) as refused:
        IncidentFilter(**values)  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_parameter"
