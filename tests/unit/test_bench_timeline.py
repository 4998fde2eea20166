"""The benchmark's batch timeline and worker-fleet metrics: pure summaries of what was measured."""

from __future__ import annotations

import json
from pathlib import Path

from bench.fleet import merge_metrics
from bench.timeline import summarize


def _write(path: Path, rows: list[list[object]]) -> Path:
    path.write_text(
        "\n".join([json.dumps({"missing": []}), *(json.dumps(r) for r in rows)]) + "\n",
        encoding="utf-8",
    )
    return path


def test_timeline_counts_overlap_of_python_and_transactions_once(tmp_path: Path) -> None:
    # Batch 0: decode 0-1, transaction 1-3; batch 1: decode 1-2 (while 0's transaction is
    # open), transaction 3-4 (waits its turn 2-3); offsets committed at 3 and 4.
    rows: list[list[object]] = [
        ["handle", 0, 0.0, 1.0, None],
        ["decode", 0, 0.0, 1.0, None],
        ["store", 0, 1.0, 3.0, None],
        ["offset_commit", 0, 3.0, 3.1, None],
        ["handle", 1, 1.0, 2.0, None],
        ["decode", 1, 1.0, 2.0, None],
        ["turn", 1, 2.0, 3.0, None],
        ["store", 1, 2.0, 4.0, None],
        ["offset_commit", 1, 4.0, 4.1, None],
        ["publish", None, 3.2, 3.4, 10],
    ]
    t = summarize(_write(tmp_path / "t.jsonl", rows))
    assert t["batches"] == 2
    assert t["wall_seconds"] == 4.1
    assert t["transaction_open_share"] == round(3.0 / 4.1, 3)  # 1-4, counted once
    assert t["mean_transactions_open"] == round(4.0 / 4.1, 2)  # 2 s + 2 s of transactions
    assert t["python_while_transaction_open_share"] == round(1.0 / 4.1, 3)  # decode 1-2
    assert t["steps"]["turn"]["mean_ms"] == 1000.0
    assert t["steps"]["publish"]["count"] == 1


def test_timeline_of_a_worker_that_wrote_nothing_is_empty(tmp_path: Path) -> None:
    assert summarize(tmp_path / "absent.jsonl")["batches"] == 0


def test_fleet_metrics_are_summed_and_batch_means_weighted() -> None:
    a = {
        "signals": 10,
        "outcomes": {"created": 10},
        "outcomes_by_topic": {"t": {"created": 10}},
        "commands_and_transitions": {},
        "events_published": 7,
        "outbox_backlog": 1,
        "errors": {},
        "batches": 1,
        "mean_batch_records": 10.0,
        "mean_batch_seconds": 0.1,
    }
    b = {
        **a,
        "signals": 30,
        "outcomes": {"created": 20, "duplicate": 10},
        "outcomes_by_topic": {"t": {"created": 20}, "u": {"duplicate": 10}},
        "events_published": 20,
        "outbox_backlog": 0,
        "batches": 3,
    }
    merged = merge_metrics([a, b])
    assert merged["signals"] == 40
    assert merged["outcomes"] == {"created": 30, "duplicate": 10}
    assert merged["outcomes_by_topic"] == {"t": {"created": 30}, "u": {"duplicate": 10}}
    assert merged["events_published"] == 27
    assert merged["outbox_backlog"] == 1
    assert merged["batches"] == 4
    assert merged["mean_batch_records"] == 10.0
    assert merged["per_process_signals"] == [10, 30]
