"""bench/results/gateway.md from gateway.json: one table per labelled run, and the profile of the
gateway process when one was taken (`python -m bench.gateway --profile`)."""

from __future__ import annotations

from typing import Any

from bench.profiling import parse_py_spy_raw, summarize

#: Text kept in gateway.md above the tables (the analysis), from `gateway-notes.md` if present.
NOTES_FILE = "gateway-notes.md"


def summarize_profile(raw: str, rate: int, row: dict[str, Any]) -> dict[str, Any]:
    data = parse_py_spy_raw(raw, rate)
    summary = summarize(data, top=15)
    summary["offered_per_s"] = row["offered_per_s"]
    summary["achieved_per_s"] = row["achieved_per_s"]
    summary["sample_rate"] = rate
    return summary


def _or_dash(value: object) -> str:
    return "–" if value is None else str(value)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| offered/s | path | achieved/s | errors | p50 to ack ms | p99 to ack ms | max ms | "
        "gateway CPU µs/request | gateway CPU cores | gateway on a CPU % | gateway waiting "
        "for a CPU % | p50 to incident event ms | p99 to incident event ms | events seen / "
        "alerts |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = r.get("gateway_cpu_us_per_request")
        cores = r.get("gateway_cpu_cores")
        lines.append(
            f"| {r['offered_per_s']:.0f} | {r['mode']} | {r['achieved_per_s']} | {r['errors']} | "
            f"{r['ack_p50_ms']} | {r['ack_p99_ms']} | {r.get('ack_max_ms', '–')} | "
            f"{'–' if cpu is None else cpu} | {'–' if cores is None else cores} | "
            f"{_or_dash(r.get('gateway_on_cpu_pct'))} | "
            f"{_or_dash(r.get('gateway_waiting_for_cpu_pct'))} | "
            f"{r['event_p50_ms']} | {r['event_p99_ms']} | {r['events_seen']}/{r['alerts_sent']} |"
        )
    return lines


def _profile(profile: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"py-spy on the gateway process at {profile['offered_per_s']:.0f}/s offered "
        f"({profile['achieved_per_s']}/s achieved), {profile['sample_rate']} Hz, CPU samples "
        f"only: {profile['busy_seconds']:.1f} s busy.",
        "",
        "| owner (self time) | s | % of busy |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r['category']} | {r['seconds']:.2f} | {r['percent_of_busy']:.1f} |"
        for r in profile["by_category"][:12]
    ]
    lines += ["", "| function (inclusive, ingest_worker) | where | % of busy |", "|---|---|---:|"]
    lines += [
        f"| `{r['function']}` | {r['file']} | {r['percent_of_busy']:.1f} |"
        for r in profile["top_inclusive_ingest_worker"][:12]
    ]
    lines += ["", "| function (self) | where | % of busy |", "|---|---|---:|"]
    lines += [
        f"| `{r['function']}` | {r['file']} | {r['percent_of_busy']:.1f} |"
        for r in profile["top_self"][:12]
    ]
    return lines


def render(runs: dict[str, Any], notes: str = "") -> str:
    lines = ["# The webhook gateway: Alertmanager notifications (2 alerts each)", ""]
    if notes:
        lines += [notes.rstrip(), ""]
    for label, run in runs.items():
        where = (
            "one `ingest-worker gateway` process, the worker (`ingest-worker dev`) beside it"
            if run.get("target") == "gateway"
            else "the gateway `ingest-worker dev` serves inside the worker's process"
        )
        load = run.get("load_average")
        lines += [
            f"## {label}",
            "",
            f"Target: {where}; open-loop generator, {run.get('connections', '?')} connections, "
            f"{run.get('duration_s', '?')} s per rate"
            + (f"; load average at the end {load[0]:.2f}." if load else "."),
            "",
            *_table(run["rows"]),
        ]
        if run.get("profile"):
            lines += _profile(run["profile"])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
