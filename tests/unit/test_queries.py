"""Named SQL blocks: parsed once, every query the store and the audit use is there."""

from __future__ import annotations

import pytest

from ingest_worker.store.queries import load_queries, parse_queries


def test_blocks_run_from_their_header_to_the_next() -> None:
    text = "-- file comment\n-- name: first\nSELECT 1;\n\n-- name: second_one\nSELECT\n  2;\n"
    assert parse_queries(text) == {"first": "SELECT 1;", "second_one": "SELECT\n  2;"}


def test_a_name_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: q\nSELECT 1;\n-- name: q\nSELECT 2;\n")


@pytest.mark.parametrize(
    ("file_name", "names"),
    [
        ("store.sql", {"lock_incidents", "insert_processed_signals", "select_incidents",
                       "select_recoveries", "insert_recoveries", "select_evidence",
                       "write_chunk", "select_command_scopes", "select_command_targets",
                       "select_receipts", "insert_receipts", "insert_command_results"}),
        ("audit.sql", {"incidents_by_id", "events_by_incident", "evidence_by_incident",
                       "events_of_incident"}),
    ],
)  # fmt: skip
def test_packaged_query_files(file_name: str, names: set[str]) -> None:
    assert set(load_queries(file_name)) == names
