"""`python -m bench` (`make bench`): the worker against the naive approach and the machine's limits.

    python -m bench [--signals 200000] [--redeliveries 0.2] [--invalid 0.02] [--rates 1000,5000]
                    [--recoveries 0.10] [--commands 0.05] [--external 0.15]
                    [--duration 30] [--naive-signals 5000] [--family-signals 20000] [--quick]
                    [--profile] [--worker-env KEY=VALUE ...]
                    [--skip naive,limits,saturation,families,latency,saturation-latency]

One run, one machine, one data set: embedded PostgreSQL (fsync on) and the embedded broker are
started once; every phase gets a fresh database and its own topics (3 partitions each, one per
registered source plus the commands topic: `harness.Topics`, from the source registry).

The stream (bench/generate.py) is what the finished product consumes: of the new, valid records
~70% seed triggers, 10% recoveries (GREEN / passed / success in an earlier trigger's scope),
5% lifecycle commands on `incident.commands`, 15% external payloads (Alertmanager and Grafana
groups firing then resolved, PagerDuty Webhooks v3 / Events API v2 triggered, acknowledged,
resolved, CloudWatch ALARM then OK); plus redeliveries and invalid records of every family.

1. generate the stream (seeded) and pre-produce its signals;
2. limits: consume-only, then write-only (the statements of `store.apply_batch` replayed from
   memory; `apply_batch` itself from memory is reported too);
3. naive per-signal orchestrator (bench/naive.py) on the first `--naive-signals` records;
4. saturation: `ingest-worker run` on the pre-produced stream, timed from readiness to the last
   offset commit and to the last event published; commands are produced while it runs, each once
   the worker has committed the signals before it (see `runs.saturation`);
5. families: a saturation run per source family alone (`--family-signals` records each);
6. latency: a fresh stream per offered load, produced at that rate (open loop) while the worker
   runs; then once more at the measured saturation throughput;
7. bench/results/<name>.json, .md and .png: throughput, CPU per signal per process, latency,
   throughput per source family, command outcomes, and the correctness of every worker run.

`--profile` instead runs the saturation phase (100,000 signals) with the worker under
pyinstrument and writes bench/results/profile.{json,md} (flat times, summary) and
bench/results/tmp-profile.{html,txt} (interactive, call tree); `--profile-tool py-spy` attaches
py-spy (not a dependency: `pip install py-spy`) to a plain worker instead and writes
bench/results/profile-pyspy.{json,md} and tmp-profile-pyspy.pyspy.txt (collapsed stacks).
Worker logs go to bench/results/tmp-logs/; `tmp-*` is git-ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

from ingest_worker.service.embedded import embedded_services

from .generate import EXTERNAL_KINDS, FAMILY, SEED_KINDS, StreamSpec, check_sample, generate
from .harness import Topics, create_topics, log, produce_all, quiesce_postgres
from .limits import consume_only, write_only
from .naive import run_naive
from .report import cpu_budget, machine, ratios, targets, write
from .runs import Context, latency, saturation, split_deferred

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("limits", "naive", "saturation", "families", "latency", "saturation-latency")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--signals",
        type=int,
        help="records in the saturation stream (200000; --quick 20000; --profile 100000)",
    )
    p.add_argument(
        "--redeliveries", type=float, default=0.20, help="fraction of exact redeliveries"
    )
    p.add_argument("--invalid", type=float, default=0.02, help="fraction of invalid records")
    p.add_argument(
        "--ignored", type=float, default=0.02, help="fraction of valid no-incident signals"
    )
    p.add_argument(
        "--updates",
        type=float,
        default=0.15,
        help="fraction of new signals that update an incident created earlier",
    )
    p.add_argument(
        "--envelopes",
        type=float,
        default=0.05,
        help="share of EventBridge / GitHub webhook shapes on the ECS / runner topics",
    )
    p.add_argument(
        "--recoveries",
        type=float,
        default=0.10,
        help="share of new records that are recovery signals of the seed kinds",
    )
    p.add_argument(
        "--commands", type=float, default=0.05, help="share of new records that are commands"
    )
    p.add_argument(
        "--external",
        type=float,
        default=0.15,
        help="share of new records that are external payloads (Alertmanager, PagerDuty, …)",
    )
    p.add_argument(
        "--family-signals",
        type=int,
        help="records per single-family saturation run (20000; --quick 2000)",
    )
    p.add_argument("--rates", default="1000,5000", help="offered loads for latency, signals/s")
    p.add_argument("--duration", type=float, help="seconds per offered load (30; --quick 5)")
    p.add_argument(
        "--naive-signals", type=int, help="records for the naive run (5000; --quick 300)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="small and short: a smoke check (< 2 min)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the worker (pyinstrument) on a saturation run instead",
    )
    p.add_argument(
        "--profile-tool",
        choices=("pyinstrument", "py-spy"),
        default="pyinstrument",
        help="pyinstrument (in the worker, the bench extra) or py-spy (attached from outside; "
        "`pip install py-spy` first)",
    )
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra INGEST_* setting for the worker (repeatable)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes in the saturation runs' consumer group (1)",
    )
    p.add_argument(
        "--no-timeline",
        action="store_true",
        help="run the saturation worker plain, not under bench.timeline_worker",
    )
    p.add_argument(
        "--skip", default="", help=f"comma-separated phases to skip: {', '.join(PHASES)}"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--name", help="results file stem (latest; --quick: quick)")
    args = p.parse_args(argv)
    if args.signals is None:
        args.signals = (
            100_000 if args.profile and not args.quick else (10_000 if args.quick else 200_000)
        )
    if args.duration is None:
        args.duration = 5.0 if args.quick else 30.0
    if args.family_signals is None:
        args.family_signals = 2000 if args.quick else 20_000
    if args.naive_signals is None:
        args.naive_signals = 300 if args.quick else 5000
    if args.name is None:
        if args.profile:
            args.name = "profile" if args.profile_tool == "pyinstrument" else "profile-pyspy"
        else:
            args.name = "quick" if args.quick else "latest"
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s) to skip: {', '.join(sorted(unknown))}")
    overrides = {}
    for item in args.worker_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("INGEST_"):
            p.error(f"--worker-env wants INGEST_KEY=VALUE, got {item!r}")
        overrides[key] = value
    args.worker_overrides = overrides
    return args


def spec_for(
    args: argparse.Namespace, signals: int, seed: int, only: str | None = None
) -> StreamSpec:
    return StreamSpec(
        signals=signals,
        redeliveries=args.redeliveries,
        invalid=args.invalid,
        ignored=args.ignored,
        updates=args.updates,
        envelopes=args.envelopes,
        recoveries=args.recoveries,
        commands=args.commands,
        external=args.external,
        seed=seed,
        only=only,
    )


#: Per-family runs keep their figures, not their time series.
_FAMILY_KEYS = (
    "records",
    "expected_events",
    "startup_seconds",
    "seconds_to_last_event",
    "throughput_to_last_commit",
    "throughput_to_last_event",
    "events_per_second",
    "cpu_seconds",
    "cpu_seconds_per_10k_signals",
    "peak_rss_mib",
    "worker_batches",
    "checks",
)


async def families(args: argparse.Namespace, ctx: Context) -> list[dict[str, Any]]:
    """One saturation run per source family alone (its triggers, recoveries and lifecycle,
    with the same redelivery and invalid fractions): what each family costs."""
    out = []
    for k, kind in enumerate((*SEED_KINDS, *EXTERNAL_KINDS)):
        stream = generate(spec_for(args, args.family_signals, args.seed + 50 + k, only=kind))
        check_sample(stream, sample=100)
        topics = Topics(f"fam{k}")
        await create_topics(ctx.bootstrap, topics.all())
        await produce_all(ctx.bootstrap, topics, split_deferred(stream)[0])
        await quiesce_postgres(ctx.admin_url)
        run = await saturation(ctx, stream, topics, name=f"family-{kind}")
        entry = {key: run[key] for key in _FAMILY_KEYS}
        entry["kind"] = kind
        entry["family"] = FAMILY[kind]
        entry["effects"] = stream.summary()["effects"]
        entry["shapes"] = dict(stream.shapes)
        out.append(entry)
        del stream
        gc.collect()
    return out


async def run_all(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results: dict[str, Any] = {"started_at": started, "machine": await machine(ctx.services)}
    spec = spec_for(args, args.signals, args.seed)
    t = time.perf_counter()
    stream = generate(spec)
    check_sample(stream)
    log(
        f"generated {len(stream.records):,} records in {time.perf_counter() - t:.1f}s: "
        f"{dict(stream.counts)}"
    )
    results["config"] = {
        "mode": "quick" if args.quick else "full",
        "stream": stream.summary(),
        "rates": args.rates,
        "duration_seconds": args.duration,
        "naive_signals": args.naive_signals,
        "worker_env": {"INGEST_LOG_LEVEL": "WARNING", **ctx.worker_overrides},
        "skipped": sorted(args.skip),
        "argv": sys.argv[1:],
    }
    topics = Topics("sat")
    topics.check_worker_env()
    await create_topics(ctx.bootstrap, topics.all())
    pre, _ = split_deferred(stream)
    results["produce_rate"] = round(await produce_all(ctx.bootstrap, topics, pre), 1)
    log(f"produced the stream's {len(pre):,} signals at {results['produce_rate']:,.0f} records/s")

    if "limits" not in args.skip:
        results["consume_only"] = await consume_only(ctx.bootstrap, topics, len(pre))
        results["write_only"] = await write_only(ctx.admin_url, stream.records)
        gc.collect()
    if "naive" not in args.skip:
        results["naive"] = await run_naive(
            ctx.bootstrap, ctx.admin_url, topics, min(args.naive_signals, len(pre))
        )
    if "saturation" not in args.skip:
        await quiesce_postgres(ctx.admin_url)
        results["saturation"] = await saturation(ctx, stream, topics)
    del stream, pre
    gc.collect()
    if "families" not in args.skip:
        results["families"] = await families(args, ctx)

    results["latency"] = []
    rates: list[tuple[float, str]] = []
    if "latency" not in args.skip:
        rates += [(r, "") for r in args.rates]
    sat = results.get("saturation")
    if sat and "saturation-latency" not in args.skip:
        rate = max(100.0, float(int(sat["throughput_to_last_event"] // 100 * 100)))
        rates.append((rate, "saturation"))
    for k, (rate, label) in enumerate(rates):
        lat_spec = spec_for(args, max(1, int(rate * args.duration)), args.seed + 1000 * (k + 1))
        lat_stream = generate(lat_spec)
        lat_topics = Topics(f"lat{k}")
        await create_topics(ctx.bootstrap, lat_topics.all())
        quiet = await quiesce_postgres(ctx.admin_url)
        log(f"latency{k}: PostgreSQL quiet after {quiet:.1f}s (earlier databases dropped)")
        run = await latency(ctx, lat_stream, lat_topics, rate, name=f"latency{k}")
        run["label"] = label
        results["latency"].append(run)
        del lat_stream
        gc.collect()

    results["ratios"] = ratios(results)
    results["cpu_budget"] = cpu_budget(results)
    results["targets"] = targets(results)
    load = [round(x, 2) for x in __import__("os").getloadavg()]
    results["machine"]["load_average_at_end"] = load
    return results


async def run_profile_mode(args: argparse.Namespace, ctx: Context) -> None:
    from .profiling import run_profile

    await run_profile(
        ctx, spec_for(args, args.signals, args.seed), args.out, args.name, args.profile_tool
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    log("starting embedded PostgreSQL (fsync on) and the Tansu broker")
    with embedded_services(fsync=True) as services:
        ctx = Context(
            services=services,
            results_dir=args.out,
            worker_overrides=args.worker_overrides,
            processes=args.processes,
            timeline=not args.no_timeline,
        )
        if args.profile:
            asyncio.run(run_profile_mode(args, ctx))
            log(f"done in {time.perf_counter() - t0:.0f}s")
            return 0
        results = asyncio.run(run_all(args, ctx))
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    paths = write(results, args.out, args.name)
    print()
    print(paths["md"].read_text(encoding="utf-8"))
    log(f"done in {results['total_seconds']:.0f}s: {paths['md']}, {paths['json']}, {paths['png']}")
    failed = [
        r
        for r in [results.get("saturation"), *results["latency"], *results.get("families", [])]
        if r and not r["checks"]["ok"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
