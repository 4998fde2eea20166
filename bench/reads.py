"""Read phase of the benchmark: the incident list on a large multi-tenant store.

    python -m bench.reads [--incidents 1000000] [--tenants 100] [--samples 300] [--walk 10000]
                          [--name reads]

Starts an embedded PostgreSQL (fsync on), migrates a fresh database and fills it set-based with
`--incidents` incidents spread evenly over `--tenants` tenants (statuses, severities, sources,
environments, titles, correlation keys and times drawn from a fixed seed), then ANALYZE. Then:

1. first page: for every filter of the list (bench `FILTERS`), `--samples` first pages (limit
   25), each for a random tenant, through `store.reads` exactly as the API reads (a pooled
   connection, a read-only transaction as `ingest_reader` with the tenant set) — p50, p99, max;
2. cursor walk: `--walk` items of one tenant by `nextCursor` (limit 100) while another task
   inserts new incidents of the same tenant and touches existing ones; checks that the walk
   saw exactly the incidents that were below its start, once each, in order.

Writes bench/results/<name>.json and .md. The target: every first page ≤ 20 ms p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ingest_worker.service.embedded import EmbeddedPostgres
from ingest_worker.store import reads
from ingest_worker.store.cursors import IncidentFilter
from ingest_worker.store.migrations import migrate

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_P99_MS = 20.0
NOW = datetime(2026, 12, 1, tzinfo=UTC)

# One statement fills the store: incident i belongs to tenant i % tenants; its other columns are
# drawn from hashes of i, so that every run builds the same store.
FILL = """
INSERT INTO incidents (tenant, id, incident_key, episode, source_kind, severity, status, title,
    env, classification, source_primary, correlation_keys, first_seen_at, last_seen_at,
    occurrence_count, last_seq, lead_signal_at, lead_signal_sha256, created_at, updated_at,
    recovery_scope)
SELECT 't' || lpad((i % $1)::text, 3, '0'),
       md5('incident' || i)::uuid,
       'bench:' || i, 1,
       (ARRAY['deploy_status','alertmanager','grafana','pagerduty','datadog','runner'])[1 + h % 6],
       CASE WHEN h % 3 = 0 THEN 'RED' ELSE 'YELLOW' END,
       (ARRAY['OPEN','OPEN','ACKNOWLEDGED','MITIGATING','RESOLVED','RESOLVED','RESOLVED',
              'CLOSED','CLOSED','CANCELLED'])[1 + (h / 7) % 10],
       (ARRAY['Checkout latency high','Deploy failed','Disk full','Pod crash looping',
              'Error rate above SLO','Certificate expiring'])[1 + (h / 11) % 6] || ' #' || i,
       (ARRAY['prod','staging','dev'])[1 + (h / 13) % 3],
       '{}'::jsonb, '{"kind": "bench", "ref": "r"}'::jsonb,
       ARRAY['service:svc-' || (h / 17) % 50],
       seen - interval '10 minutes', seen, 1, 1, seen, md5('s' || i),
       seen - interval '9 minutes', seen + interval '1 second', 'bench:' || i
FROM (
    SELECT i, hashint4(i)::bigint + 2147483648 AS h,
           $2::timestamptz
             - (((hashint4(i + 7)::bigint + 2147483648) % (90 * 86400)) * interval '1 second')
             AS seen
    FROM generate_series($3::int, $4::int) AS i
) AS g
"""

FILTERS: dict[str, dict[str, Any]] = {
    "everything": {},
    "status=OPEN": {"statuses": ("OPEN",)},
    "status=OPEN&severity=RED": {"statuses": ("OPEN",), "severities": ("RED",)},
    "active statuses": {"statuses": ("OPEN", "ACKNOWLEDGED", "MITIGATING")},
    "env=prod&status=OPEN": {"envs": ("prod",), "statuses": ("OPEN",)},
    "source=pagerduty": {"sources": ("pagerduty",)},
    "correlationKey": {"correlation_keys": ("service:svc-7",)},
    "incidentKey": {"incident_keys": ("bench:12345",)},
    "q=checkout": {"q": "checkout"},
    "since 1h": {"since": NOW - timedelta(hours=1)},
    "since 7d, timeField=created": {"since": NOW - timedelta(days=7), "time_field": "created"},
    "sort=-severity": {"sort": "-severity"},
    "sort=-created": {"sort": "-created"},
    "sort=-updated&status=RESOLVED": {"sort": "-updated", "statuses": ("RESOLVED",)},
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fill(pool: asyncpg.Pool, incidents: int, tenants: int) -> float:
    started = time.perf_counter()
    chunk = 100_000
    async with pool.acquire() as conn:
        for start in range(0, incidents, chunk):
            end = min(incidents, start + chunk) - 1
            await conn.execute(FILL, tenants, NOW, start, end)
            print(f"  {end + 1:>9,} incidents", flush=True)
        await conn.execute("ANALYZE")
    return time.perf_counter() - started


async def prewarm(pool: asyncpg.Pool) -> None:
    """Load `incidents` and its indexes into PostgreSQL's cache (pg_prewarm)."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        await conn.execute(
            "SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.relname = 'incidents' "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'incidents'::regclass)"
        )


async def first_pages(pool: asyncpg.Pool, tenants: int, samples: int) -> dict[str, Any]:
    rng = random.Random(7)
    results: dict[str, Any] = {}
    for n, (name, values) in enumerate(FILTERS.items()):
        flt = IncidentFilter(**values)
        # Where the server's time goes, on a tenant this filter has not read yet (the cold case
        # most samples meet) and then again on the same one (warm).
        probe = f"t{(tenants - 1 - n) % tenants:03d}"
        cold, warm = await explain(pool, probe, flt), await explain(pool, probe, flt)
        times: list[float] = []
        sizes: list[int] = []
        for _ in range(samples):
            tenant = f"t{rng.randrange(tenants):03d}"
            started = time.perf_counter()
            async with reads.reading(pool, tenant) as conn:
                page = await reads.list_incidents(conn, tenant, flt, limit=25)
            times.append((time.perf_counter() - started) * 1000)
            sizes.append(len(page.items))
        results[name] = {
            "server_ms": warm["server_ms"],
            "server_cold_ms": cold["server_ms"],
            "pages_read_cold": cold["pages_read"],
            "pages_touched": cold["pages_read"] + cold["pages_hit"],
            "plan": cold["nodes"],
            "p50_ms": round(pct(times, 0.50), 3),
            "p99_ms": round(pct(times, 0.99), 3),
            "max_ms": round(max(times), 3),
            "mean_items": round(sum(sizes) / len(sizes), 1),
            "within_target": pct(times, 0.99) <= TARGET_P99_MS,
        }
        print(f"  {name:34} p99 {results[name]['p99_ms']:8.2f} ms, server cold "
              f"{cold['server_ms']:6.2f} ms warm {warm['server_ms']:6.2f} ms, "
              f"{results[name]['pages_touched']} pages {cold['nodes']}", flush=True)  # fmt: skip
    return results


async def explain(pool: asyncpg.Pool, tenant: str, flt: IncidentFilter) -> dict[str, Any]:
    """Where a first page's time goes on the server: execution time, the buffers it found in
    PostgreSQL's cache (hit) and those it had to read in (from the OS), and the plan's nodes."""
    from ingest_worker.store.reads import LIST_SQL, _list_args

    async with reads.reading(pool, tenant) as conn:
        text = await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {LIST_SQL[flt.sort]}",
            *_list_args(tenant, flt, None, 26),
        )
    doc = json.loads(text)[0]

    def nodes(node: dict[str, Any]) -> list[str]:
        here = f"{node['Node Type']} {node.get('Index Name') or node.get('Relation Name') or ''}"
        return [here.strip()] + [n for child in node.get("Plans", []) for n in nodes(child)]

    plan = doc["Plan"]
    return {
        "server_ms": round(doc["Execution Time"], 3),
        "pages_hit": plan.get("Shared Hit Blocks", 0),
        "pages_read": plan.get("Shared Read Blocks", 0),
        "nodes": nodes(plan),
    }


async def _arrivals(pool: asyncpg.Pool, tenant: str, stop: asyncio.Event) -> int:
    """New incidents of `tenant` (newer than everything) and touches of old ones, until `stop`."""
    n = 0
    while not stop.is_set():
        n += 1
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO incidents (tenant, id, incident_key, episode, source_kind, severity, "
                "status, title, env, source_primary, first_seen_at, last_seen_at, "
                "occurrence_count, last_seq, lead_signal_at, lead_signal_sha256, recovery_scope) "
                "VALUES ($1, $2, $3, 1, 'bench', 'RED', 'OPEN', 'arrived', 'prod', '{}', $4, $4, "
                "1, 1, $4, 'x', $3)",
                tenant, uuid.uuid4(), f"arrived:{n}", NOW + timedelta(seconds=n),
            )  # fmt: skip
            await conn.execute(
                "UPDATE incidents SET occurrence_count = occurrence_count + 1, updated_at = now() "
                "WHERE tenant = $1 AND incident_key = $2",
                tenant, f"bench:{n * 100 + 3}",
            )  # fmt: skip
        await asyncio.sleep(0.005)
    return n


async def cursor_walk(pool: asyncpg.Pool, tenant: str, items: int) -> dict[str, Any]:
    flt = IncidentFilter()
    async with pool.acquire() as conn:
        below = [
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM incidents WHERE tenant = $1 ORDER BY last_seen_at DESC, id DESC "
                "LIMIT $2",
                tenant, items,
            )
        ]  # fmt: skip
    stop = asyncio.Event()
    arriving = asyncio.create_task(_arrivals(pool, tenant, stop))
    seen: list[str] = []
    cursor = None
    page_times: list[float] = []
    started = time.perf_counter()
    while len(seen) < items:
        t0 = time.perf_counter()
        async with reads.reading(pool, tenant) as conn:
            page = await reads.list_incidents(conn, tenant, flt, limit=100, cursor=cursor)
        page_times.append((time.perf_counter() - t0) * 1000)
        seen += [i["id"] for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    stop.set()
    arrived = await arriving
    seen = seen[:items]
    return {
        "tenant": tenant,
        "items": len(seen),
        "seconds": round(time.perf_counter() - started, 3),
        "page_p99_ms": round(pct(page_times, 0.99), 3),
        "duplicates": len(seen) - len(set(seen)),
        "gaps": len(set(below) - set(seen)),
        "in_order": seen == below,
        "arrivals_during_walk": arrived,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Read phase",
        "",
        f"{result['incidents']:,} incidents over {result['tenants']} tenants, "
        f"{result['samples']} first pages per filter (limit 25, random tenant), "
        f"target p99 ≤ {TARGET_P99_MS:g} ms.",
        "",
        "| filter | p50 ms | p99 ms | max ms | items | within target | server ms cold / warm "
        "| 8 kB pages per page |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, row in result["first_pages"].items():
        lines.append(
            f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} | "
            f"{row['mean_items']} | {'yes' if row['within_target'] else 'NO'} | "
            f"{row['server_cold_ms']} / {row['server_ms']} | {row['pages_touched']} |"
        )
    lines += [
        "",
        "Times are what a caller of the read module sees (pool, read-only transaction as "
        "`ingest_reader`, the query); *server ms* is PostgreSQL's execution time for one tenant "
        "the filter had not read yet (cold) and right after (warm); *pages* are the table and "
        "index pages that first page touched. PostgreSQL's buffer cache (shared_buffers "
        f"{result.get('shared_buffers', '128MB')}) "
        + (
            "was loaded with the incidents table and its indexes before the samples "
            "(pg_prewarm), as a running deployment's cache holds the rows it keeps writing; "
            "the fill itself leaves them out (bulk loads go through a small ring of buffers)."
            if result.get("prewarmed")
            else "was not warmed: a filter that tests many rows per match reads most of them "
            "in from the OS."
        ),
    ]
    walk = result["cursor_walk"]
    lines += [
        "",
        f"Cursor walk: {walk['items']:,} items of {walk['tenant']} by 100 in "
        f"{walk['seconds']} s (page p99 {walk['page_p99_ms']} ms) while "
        f"{walk['arrivals_during_walk']} incidents arrived: {walk['duplicates']} duplicate(s), "
        f"{walk['gaps']} gap(s), in order: {walk['in_order']}.",
        "",
        f"Fill: {result['fill_seconds']} s; PostgreSQL's shared_buffers: "
        f"{result.get('shared_buffers', '128MB')}.",
        "",
        f"Load average (1 min) at the end: {result.get('load_average_1m')} on "
        f"{result.get('cpus')} CPUs; the machine was shared with other work during the run.",
    ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    postgres = EmbeddedPostgres(shared_buffers=args.shared_buffers).start()
    try:
        admin = await asyncpg.connect(postgres.url)
        try:
            await admin.execute("DROP DATABASE IF EXISTS bench_reads")
            await admin.execute("CREATE DATABASE bench_reads")
        finally:
            await admin.close()
        url = postgres.url.rsplit("/", 1)[0] + "/bench_reads"
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
        assert pool is not None
        try:
            print(f"filling {args.incidents:,} incidents over {args.tenants} tenants", flush=True)
            filled = await fill(pool, args.incidents, args.tenants)
            if args.prewarm:
                await prewarm(pool)
            print("first pages", flush=True)
            pages = await first_pages(pool, args.tenants, args.samples)
            walk_items = min(args.walk, args.incidents // args.tenants)
            print(f"cursor walk of {walk_items:,} items", flush=True)
            walk = await cursor_walk(pool, "t042" if args.tenants > 42 else "t000", walk_items)
        finally:
            await pool.close()
    finally:
        postgres.stop()
    return {
        "incidents": args.incidents,
        "tenants": args.tenants,
        "samples": args.samples,
        "fill_seconds": round(filled, 1),
        "shared_buffers": args.shared_buffers,
        "prewarmed": args.prewarm,
        "first_pages": pages,
        "cursor_walk": walk,
        "target_p99_ms": TARGET_P99_MS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--incidents", type=int, default=1_000_000)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--walk", type=int, default=10_000)
    p.add_argument(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        help="sample with the cache as the bulk fill left it (cold) instead of loading the "
        "incidents table and its indexes first",
    )
    p.add_argument(
        "--shared-buffers",
        default="1GB",
        help="PostgreSQL's buffer cache: one that holds the incidents table, as the operations "
        "guide recommends (1,000,000 incidents take about 320 MB)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="reads")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    ok = all(r["within_target"] for r in result["first_pages"].values())
    walk = result["cursor_walk"]
    return 0 if ok and walk["in_order"] and not walk["duplicates"] and not walk["gaps"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
