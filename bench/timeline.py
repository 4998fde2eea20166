"""The per-batch timeline of a saturation run (`bench.timeline_worker`), summarized.

Per batch: when it was handed over, decoded, waited for its lock turn, was in its transaction
(plan, chunk statements, COMMIT), and when its offsets were committed; per step the mean and
p95 duration and the share of the run's wall time it occupied (a step running in several batches
at once counts once); the share of wall time with at least one transaction open (PostgreSQL
busy for the worker) and with the event loop in decode or plan (Python busy for a batch), and
their overlap: whether Python and PostgreSQL worked at the same time or in series.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

STEPS = (
    "fetch",
    "handle",
    "decode",
    "turn",
    "store",
    "plan",
    "chunk_wait",
    "tx_commit",
    "offset_commit",
    "publish",
)


def load(path: Path) -> tuple[list[str], list[tuple[str, int | None, float, float, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ["(no timeline written)"], []
    if not lines:
        return [], []
    missing = json.loads(lines[0]).get("missing", [])
    rows = [tuple(json.loads(line)) for line in lines[1:]]
    return missing, rows  # type: ignore[return-value]


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(e - s for s, e in intervals)


def _intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _clip(intervals: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(s, lo), min(e, hi)) for s, e in intervals if e > lo and s < hi]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summarize(path: Path, *, sample: int = 8) -> dict[str, Any]:
    """Per-step durations and wall-time shares, overlap, and a sample of consecutive batches."""
    missing, rows = load(path)
    batch_rows = [r for r in rows if r[1] is not None]
    if not batch_rows:
        return {"missing": missing, "batches": 0}
    # The window: the first batch handed over to the last offset commit.
    lo = min(r[2] for r in batch_rows if r[0] == "handle")
    hi = max(r[3] for r in batch_rows)
    wall = max(1e-9, hi - lo)
    by_step: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for step, b, start, end, _ in rows:
        # fetch and publish belong to no batch; the other steps count only inside a batch
        # (a COMMIT of an outbox round is not a batch's).
        if b is not None or step in ("fetch", "publish"):
            by_step[step].append((start, end))
    steps: dict[str, Any] = {}
    for step in STEPS:
        spans = _clip(by_step.get(step, []), lo, hi)
        if not spans:
            continue
        durations = [e - s for s, e in spans]
        steps[step] = {
            "count": len(spans),
            "mean_ms": round(sum(durations) / len(durations) * 1000, 2),
            "p95_ms": round(_pct(durations, 0.95) * 1000, 2),
            "busy_share": round(_length(_union(spans)) / wall, 3),
            "sum_share": round(sum(durations) / wall, 3),
        }
    store = _union(_clip(by_step.get("store", []), lo, hi))
    python = _union(_clip(by_step.get("decode", []) + by_step.get("plan", []), lo, hi))
    batches: dict[int, dict[str, float]] = defaultdict(dict)
    for step, b, start, end, _ in batch_rows:
        entry = batches[b]  # type: ignore[index]
        entry[f"{step}_start"] = min(entry.get(f"{step}_start", start), start)
        entry[f"{step}_end"] = max(entry.get(f"{step}_end", end), end)
        entry[f"{step}_ms"] = entry.get(f"{step}_ms", 0.0) + (end - start) * 1000
    numbers = sorted(batches)
    middle = numbers[len(numbers) // 2 : len(numbers) // 2 + sample]
    sample_rows = []
    for b in middle:
        e = batches[b]
        t0 = e.get("handle_start", lo)
        sample_rows.append(
            {
                "batch": b,
                "handed_over_s": round(t0 - lo, 3),
                **{
                    f"{step}_at_ms": round((e[f"{step}_start"] - t0) * 1000, 1)
                    for step in ("decode", "turn", "store", "tx_commit", "offset_commit")
                    if f"{step}_start" in e
                },
                **{
                    f"{step}_ms": round(e[f"{step}_ms"], 1)
                    for step in ("decode", "turn", "store", "plan", "chunk_wait", "tx_commit")
                    if f"{step}_ms" in e
                },
                "done_ms": round((e.get("offset_commit_end", t0) - t0) * 1000, 1),
            }
        )
    store_open = [
        (e["store_start"], e["store_end"]) for e in batches.values() if "store_start" in e
    ]
    depth = sum(e - s for s, e in store_open) / wall
    return {
        "missing": missing,
        "batches": len(numbers),
        "wall_seconds": round(wall, 3),
        "steps": steps,
        "transaction_open_share": round(_length(store) / wall, 3),
        "python_decode_or_plan_share": round(_length(python) / wall, 3),
        "python_while_transaction_open_share": round(_intersection(store, python) / wall, 3),
        "mean_transactions_open": round(depth, 2),
        "sample": sample_rows,
    }


def markdown(t: dict[str, Any]) -> list[str]:
    if not t or not t.get("batches"):
        return []
    lines = [
        "## Timeline of the saturation run (per batch)",
        "",
        f"{t['batches']:,} batches over {t['wall_seconds']:.1f} s (first batch handed over → "
        "last offset commit), measured by `bench.timeline_worker` wrapping the worker's steps. "
        f"A transaction was open {t['transaction_open_share']:.0%} of the time "
        f"(on average {t['mean_transactions_open']:.2f} at once); the event loop decoded or "
        f"planned {t['python_decode_or_plan_share']:.0%} of the time, "
        f"{t['python_while_transaction_open_share']:.0%} while a transaction was open.",
        "",
        "| step | count | mean ms | p95 ms | share of wall time (union) | sum / wall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for step, s in t["steps"].items():
        lines.append(
            f"| {step} | {s['count']:,} | {s['mean_ms']:.1f} | {s['p95_ms']:.1f} | "
            f"{s['busy_share']:.0%} | {s['sum_share']:.2f} |"
        )
    lines += [
        "",
        "Steps: fetch = the consumer's `getmany`; handle = the consume loop handing a batch to "
        "the writer chain (decode, then waiting for a free writer slot); decode = parse, "
        "validate, map; turn = waiting for the batch before to hold its locks; store = the "
        "batch's transaction (turn, locks, reads, plan, chunk statements, COMMIT); plan = "
        "`BatchPlan.compute` per chunk; chunk_wait = waiting for the last chunk statement; "
        "tx_commit = COMMIT (the WAL flush); offset_commit = the consumer's commit; publish = "
        "an outbox round that published events.",
        "",
    ]
    if t["sample"]:
        cols = [k for k in t["sample"][0] if k != "batch"]
        lines += [
            "Consecutive batches from the middle of the run (`*_at_ms`: start after the batch "
            "was handed over):",
            "",
            "| batch | " + " | ".join(cols) + " |",
            "|---:|" + "---:|" * len(cols),
        ]
        for row in t["sample"]:
            lines.append(
                f"| {row['batch']} | " + " | ".join(str(row.get(c, "")) for c in cols) + " |"
            )
        lines.append("")
    if t["missing"]:
        lines += [f"Not timed (not found in the worker): {', '.join(t['missing'])}.", ""]
    return lines
