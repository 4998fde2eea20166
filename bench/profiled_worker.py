"""`ingest-worker run` under pyinstrument (used by `python -m bench --profile`).

Usage: python -m bench.profiled_worker OUTPUT_PREFIX  (configured by INGEST_* like the worker).
Writes OUTPUT_PREFIX.html (interactive), .txt (call tree) and .json (flat self/inclusive times)
when the worker exits (SIGTERM).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _identity(frame: Any) -> tuple[str, str, int]:
    return (frame.function, frame.file_path_short or frame.file_path or "?", frame.line_no or 0)


def flat_times(root: Any) -> dict[str, Any]:
    """Self and inclusive time per function (inclusive counted once per stack, recursion-safe)."""
    self_time: dict[tuple[str, str, int], float] = {}
    inclusive: dict[tuple[str, str, int], float] = {}
    stack: list[tuple[Any, frozenset[tuple[str, str, int]]]] = [(root, frozenset())]
    while stack:
        frame, on_path = stack.pop()
        # pyinstrument's synthetic leaves ("[self]", "[await]") are time of their parent.
        synthetic = frame.function.startswith("[") and frame.parent is not None
        ident = _identity(frame.parent if synthetic else frame)
        own = frame.time - sum(c.time for c in frame.children)
        self_time[ident] = self_time.get(ident, 0.0) + max(0.0, own)
        if ident not in on_path and not synthetic:
            inclusive[ident] = inclusive.get(ident, 0.0) + frame.time
        path = on_path | {ident}
        stack.extend((child, path) for child in frame.children)

    def rows(table: dict[tuple[str, str, int], float]) -> list[dict[str, Any]]:
        ordered = sorted(table.items(), key=lambda kv: kv[1], reverse=True)
        return [
            {"function": f, "file": p, "line": ln, "seconds": round(t, 4)}
            for (f, p, ln), t in ordered[:200]
        ]

    return {
        "total_seconds": round(root.time, 4),
        "self": rows(self_time),
        "inclusive": rows(inclusive),
    }


def main() -> int:
    prefix = Path(sys.argv[1])
    from pyinstrument import Profiler

    from ingest_worker.service.cli import main as worker_main

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    code = 1
    try:
        code = worker_main(["run"])
    finally:
        session = profiler.stop()
        prefix.parent.mkdir(parents=True, exist_ok=True)
        prefix.with_suffix(".html").write_text(profiler.output_html(), encoding="utf-8")
        prefix.with_suffix(".txt").write_text(
            profiler.output_text(unicode=True, show_all=False), encoding="utf-8"
        )
        root = session.root_frame(trim_stem=False)
        if root is not None:
            data = flat_times(root)
            data["sample_count"] = session.sample_count
            data["cpu_time"] = session.cpu_time
            data["duration"] = session.duration
            prefix.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
