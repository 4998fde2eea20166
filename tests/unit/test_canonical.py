"""Canonical JSON, ids and timestamps: the byte-level contract of hashes and identities."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ingest_worker.core.canonical import (
    canonical_json,
    canonical_sha256,
    event_id,
    evidence_sha256,
    incident_id,
    reference_json,
    utc_timestamp,
)

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text()
)
floats = st.floats(allow_nan=False, allow_infinity=False)


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )


@given(json_values(scalars))
def test_canonical_json_is_pythons_sorted_compact_json_for_values_without_floats(
    value: Any,
) -> None:
    assert canonical_json(value) == reference_json(value)


@given(json_values(scalars | floats))
def test_canonical_json_differs_from_python_only_in_float_exponents(value: Any) -> None:
    ours, python = canonical_json(value), reference_json(value)
    assert json.loads(ours) == json.loads(python)
    if "e" not in python.replace("true", "").replace("false", ""):
        assert ours == python


def test_floats_are_written_in_orjsons_shortest_round_trip_form() -> None:
    assert (
        canonical_json([1e-7, 1.5e-5, 1e16, 1e100, 1.5, 0.1])
        == "[1e-7,0.000015,1e+16,1e+100,1.5,0.1]"
    )


def test_keys_are_sorted_by_code_point_and_unicode_is_kept() -> None:
    assert (
        canonical_json({"é": 1, "z": {"b": 2, "a": 3}, "😀": 0})
        == '{"z":{"a":3,"b":2},"é":1,"😀":0}'
    )


def test_values_orjson_refuses_fall_back_to_the_reference_encoder() -> None:
    assert canonical_json({"big": 10**30}) == '{"big":1000000000000000000000000000000}'


@given(st.uuids(), st.text(), st.text())
def test_evidence_sha256_is_the_canonical_hash_of_incident_kind_and_ref(
    incident: uuid.UUID, kind: str, ref: str
) -> None:
    try:
        expected = canonical_sha256({"incident_id": str(incident), "kind": kind, "ref": ref})
    except UnicodeEncodeError:  # lone surrogates: refused by the decoder long before this
        return
    assert evidence_sha256(incident, kind, ref) == expected


def test_ids_are_pure_functions_of_their_inputs() -> None:
    key = "deploy_status:prod:d-1:2024-01-01T00:00:00Z"
    assert incident_id(key) == incident_id(key) != incident_id(key + "x")
    assert event_id(incident_id(key), 1) != event_id(incident_id(key), 2)
    # Ids are a public contract: this value must never change.
    assert str(incident_id(key)) == "5fb9d9e4-c84a-5031-bb69-f86552662494"


def test_timestamps_are_rendered_in_utc_with_fractions_only_when_non_zero() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert utc_timestamp(datetime(2024, 1, 1, 1, 0, tzinfo=plus_one)) == "2024-01-01T00:00:00Z"
    assert utc_timestamp(datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)) == (
        "2024-01-01T00:00:00.25Z"
    )


@given(st.text())
def test_ids_are_the_standard_uuid5_of_their_names(name: str) -> None:
    from ingest_worker.core.canonical import ID_NAMESPACE, _uuid5

    try:
        expected = uuid.uuid5(ID_NAMESPACE, name)
    except UnicodeEncodeError:
        return
    ours = _uuid5(name)
    assert ours == expected and str(ours) == str(expected) and hash(ours) == hash(expected)
    assert ours.version == 5


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.timezones()
    )
)
def test_utc_timestamp_is_the_utc_instant_without_trailing_zeros(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        expected += f".{utc.microsecond:06d}".rstrip("0")
    assert utc_timestamp(moment) == expected + "Z"
