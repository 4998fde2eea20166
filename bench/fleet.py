"""N worker processes in one consumer group, driven as one worker (`--processes N`).

The same `ingest-worker run` N times with the same settings (the same `INGEST_GROUP_ID`): the
group shares the signal partitions among them, exactly as N replicas would. Their /metrics are
summed, their CPU is summed (`CpuMeter` takes every pid), and the run fails if any exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import WorkerProc


def merge_metrics(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several workers' parsed /metrics (`harness.parse_metrics`); the batch means
    weighted by each worker's batches; the outbox backlog is the largest (one table)."""
    if len(parts) == 1:
        return parts[0]

    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = a or {}, b or {}
            return {k: add(a.get(k), b.get(k)) for k in sorted({*a, *b})}
        return (a or 0) + (b or 0)

    merged: dict[str, Any] = {}
    for key in ("signals", "outcomes", "outcomes_by_topic", "commands_and_transitions"):
        value: Any = parts[0][key]
        for part in parts[1:]:
            value = add(value, part[key])
        merged[key] = value
    merged["events_published"] = sum(p["events_published"] for p in parts)
    merged["outbox_backlog"] = max(p["outbox_backlog"] for p in parts)
    merged["errors"] = {f"p{i}:{k}": v for i, p in enumerate(parts) for k, v in p["errors"].items()}
    batches = sum(p["batches"] for p in parts)
    merged["batches"] = batches
    for key in ("mean_batch_records", "mean_batch_seconds"):
        merged[key] = round(sum(p[key] * p["batches"] for p in parts) / max(1, batches), 4)
    merged["per_process_signals"] = [p["signals"] for p in parts]
    return merged


class WorkerFleet:
    """`count` worker processes with one environment (one group), each its own HTTP port."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        count: int,
        commands: Sequence[list[str] | None],
    ) -> None:
        self.workers = [
            WorkerProc(
                env=env,
                log_path=log_path if i == 0 else log_path.with_suffix(f".{i}.log"),
                command=commands[i] if i < len(commands) else None,
            )
            for i in range(count)
        ]

    def start(self) -> WorkerFleet:
        for worker in self.workers:
            worker.log_path.unlink(missing_ok=True)
            worker.start()
        return self

    @property
    def pid(self) -> int:
        return self.workers[0].pid

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def exited(self) -> bool:
        return any(w.proc is not None and w.proc.poll() is not None for w in self.workers)

    async def wait_ready(self, timeout: float = 90.0) -> float:
        """When every process answered /readyz (the last of them)."""
        return max(await asyncio.gather(*(w.wait_ready(timeout) for w in self.workers)))

    async def metrics(self) -> dict[str, Any] | None:
        parts = await asyncio.gather(*(w.metrics() for w in self.workers))
        if any(p is None for p in parts):
            return None
        return merge_metrics([p for p in parts if p is not None])

    async def stop(self, timeout: float = 40.0) -> int | None:
        codes = await asyncio.gather(*(w.stop(timeout) for w in self.workers))
        return next((c for c in codes if c), codes[0])

    def tail(self, lines: int = 30) -> str:
        return "\n\n".join(w.tail(lines) for w in self.workers)

    def warnings(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self.workers:
            for name, n in worker.warnings().items():
                counts[name] = counts.get(name, 0) + n
        return counts
