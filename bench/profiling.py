"""`python -m bench --profile`: the saturation run with the worker under pyinstrument, summarized.

The worker runs as `python -m bench.profiled_worker` (the same `ingest-worker run`, wrapped in a
pyinstrument Profiler, async_mode disabled: the event loop thread as it is, idle time included).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from .generate import StreamSpec, check_sample, generate
from .harness import Topics, WorkerProc, create_topics, log, produce_all
from .runs import Context, saturation, split_deferred


def _short(path: str) -> str:
    """`.../site-packages/x/y.py` → `x/y.py`, `.../src/ingest_worker/z.py` → `ingest_worker/z.py`,
    `.../lib/python3.11/json/decoder.py` → `json/decoder.py` (py-spy already shortens paths)."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/src/ingest_worker/" in path:
        return "ingest_worker/" + path.split("/src/ingest_worker/", 1)[1]
    return re.sub(r"^.*/python3\.\d+/", "", path)


def category(path: str, function: str) -> str:
    """Who owns this time: an ingest_worker module, a library, the stdlib, or idle waiting."""
    path = _short(path)
    if (function == "select" and "selectors" in path) or function == "epoll.poll":
        return "idle (epoll wait)"  # pyinstrument: the event loop waiting for I/O
    if path == "<built-in>":
        return "C built-ins (socket, json, hashlib, …)"
    if path.endswith("threading.py") and function.endswith("wait"):
        return "idle (thread wait)"
    if path.startswith("ingest_worker/"):
        return "ingest_worker." + Path(path).stem
    if path.startswith("<"):
        return path
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in sys.stdlib_module_names:
        return f"stdlib {top}"
    return top


def summarize(data: dict[str, Any], top: int = 25) -> dict[str, Any]:
    total = data["total_seconds"]
    by_category: dict[str, float] = defaultdict(float)
    for row in data["self"]:
        by_category[category(row["file"], row["function"])] += row["seconds"]
    idle = sum(v for c, v in by_category.items() if c.startswith("idle"))
    busy = max(1e-9, total - idle)
    hot = [r for r in data["self"] if not category(r["file"], r["function"]).startswith("idle")]
    own = [r for r in data["inclusive"] if "ingest_worker/" in r["file"]]
    return {
        "total_seconds": total,
        "idle_seconds": round(idle, 3),
        "busy_seconds": round(busy, 3),
        "by_category": [
            {"category": c, "seconds": round(s, 3), "percent_of_busy": round(100 * s / busy, 1)}
            for c, s in sorted(by_category.items(), key=lambda kv: kv[1], reverse=True)
            if not c.startswith("idle")
        ][:top],
        "top_self": [
            {**r, "percent_of_busy": round(100 * r["seconds"] / busy, 1)} for r in hot[:top]
        ],
        "top_inclusive_ingest_worker": [
            {**r, "percent_of_busy": round(100 * r["seconds"] / busy, 1)} for r in own[:top]
        ],
    }


def markdown(summary: dict[str, Any], run: dict[str, Any], tool: str) -> str:
    what = (
        "py-spy record (sampling from outside, 200 Hz, CPU samples only)"
        if tool == "py-spy"
        else "pyinstrument in the worker process (1 ms interval, async_mode disabled; its "
        "overhead inflates small-function-heavy code)"
    )
    lines = [
        f"# Worker profile ({tool}, saturation run)",
        "",
        f"Profiler: {what}. {run['records']:,} signals; "
        f"{run['throughput_to_last_event']:,.0f} signals/s to the last event while profiled; "
        f"worker CPU {run['cpu_seconds_per_10k_signals']['worker']:.2f} s per 10k signals. The "
        f"profile covers the whole worker process life: {summary['total_seconds']:.1f} s, of "
        f"which {summary['idle_seconds']:.1f} s idle (epoll or thread waits) and "
        f"{summary['busy_seconds']:.1f} s busy.",
        "",
        "## Busy time by owner (self time)",
        "",
        "| owner | seconds | % of busy |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r['category']} | {r['seconds']:.2f} | {r['percent_of_busy']:.1f} |"
        for r in summary["by_category"][:20]
    ]
    lines += [
        "",
        "## Hottest functions (self time)",
        "",
        "| function | where | seconds | % of busy |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| `{r['function']}` | {r['file']}:{r['line']} | {r['seconds']:.2f} | "
        f"{r['percent_of_busy']:.1f} |"
        for r in summary["top_self"]
    ]
    lines += [
        "",
        "## ingest_worker functions (inclusive time)",
        "",
        "| function | where | seconds | % of busy |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| `{r['function']}` | {r['file']}:{r['line']} | {r['seconds']:.2f} | "
        f"{r['percent_of_busy']:.1f} |"
        for r in summary["top_inclusive_ingest_worker"]
    ]
    return "\n".join(lines) + "\n"


def parse_py_spy_raw(text: str, rate: int) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks → the same flat structure as bench.profiled_worker writes.

    Functions are keyed by (function, file) (py-spy reports the current line, not the def line).
    Idle samples are not recorded (no --idle), so every sample is CPU on the worker's thread.
    """
    frame_re = re.compile(r"^(.*) \((.*):(\d+)\)$")
    self_time: dict[tuple[str, str], float] = defaultdict(float)
    inclusive: dict[tuple[str, str], float] = defaultdict(float)
    total = 0.0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        seconds = int(count_text) / rate
        total += seconds
        idents = []
        for frame in stack.split(";"):
            match = frame_re.match(frame)
            if not match:
                idents.append((frame, "?"))
                continue
            idents.append((match[1], _short(match[2])))
        self_time[idents[-1]] += seconds
        for ident in set(idents):
            inclusive[ident] += seconds

    def rows(table: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
        ordered = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:200]
        return [
            {"function": f, "file": p, "line": 0, "seconds": round(t, 4)} for (f, p), t in ordered
        ]

    return {"total_seconds": round(total, 4), "self": rows(self_time), "inclusive": rows(inclusive)}


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (profiling only)")
    return found


async def run_profile(
    ctx: Context, spec: StreamSpec, out_dir: Path, name: str, tool: str = "pyinstrument"
) -> dict[str, Any]:
    stream = generate(spec)
    check_sample(stream)
    topics = Topics(f"{name}")
    await create_topics(ctx.bootstrap, topics.all())
    rate = await produce_all(ctx.bootstrap, topics, split_deferred(stream)[0])
    log(f"profile: produced {len(stream.records):,} records at {rate:,.0f}/s")
    prefix = out_dir / name
    # Raw profiles are large: they go to git-ignored `tmp-*` files; the summary (.json, .md) stays.
    scratch = out_dir / f"tmp-{name}"
    spy: list[subprocess.Popen[bytes]] = []
    spy_rate = 200
    raw = scratch.with_suffix(".pyspy.txt")
    if tool == "py-spy":
        exe = _py_spy()

        def attach(worker: WorkerProc) -> None:
            spy.append(
                subprocess.Popen(
                    [exe, "record", "--pid", str(worker.pid), "--rate", str(spy_rate),
                     "--format", "raw", "--output", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

        run = await saturation(ctx, stream, topics, name=name, on_start=attach)
        for proc in spy:
            proc.wait(60)
        data = parse_py_spy_raw(raw.read_text(encoding="utf-8"), spy_rate)
        prefix.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    else:
        command = [sys.executable, "-m", "bench.profiled_worker", str(scratch)]
        run = await saturation(ctx, stream, topics, name=name, command=command)
        data = json.loads(scratch.with_suffix(".json").read_text(encoding="utf-8"))
        prefix.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    summary = summarize(data)
    text = markdown(summary, run, tool)
    prefix.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    outputs = f"{raw} (collapsed stacks)" if tool == "py-spy" else f"{scratch}.html, {scratch}.txt"
    log(f"profile: {outputs}, {prefix}.json, {prefix}.md (summary)")
    return {"run": run, "summary": summary}
