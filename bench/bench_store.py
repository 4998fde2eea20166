"""Throughput of store.apply_batch on an embedded PostgreSQL with fsync on (not a test).

Usage: .venv/bin/python bench/bench_store.py [--batch 500] [--batches 41] [--codec]
Mix per batch: ~70% signals of new incidents, ~20% new signals of existing incidents,
~10% redeliveries; two evidence items per signal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import incident_input

from ingest_worker.core.values import Severity
from ingest_worker.service.embedded import EmbeddedPostgres
from ingest_worker.store.incidents import apply_batch, init_connection
from ingest_worker.store.migrations import migrate


def make_batches(batch: int, batches: int, seed: int = 7) -> list[list]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    keys: list[str] = []
    sent: list = []  # type: ignore[type-arg]
    out = []
    n = 0
    for _ in range(batches):
        items = []
        for _ in range(batch):
            n += 1
            roll = rng.random()
            if roll < 0.1 and sent:
                items.append(rng.choice(sent))
                continue
            if roll < 0.3 and keys:
                key = rng.choice(keys)
            else:
                key = f"deploy_status:prod:deploy-{n}:2024-01-01T00:00:00Z"
                keys.append(key)
            item = incident_input(
                key,
                signal=f"s{n}",
                at=rng.randrange(100_000),
                severity=Severity.RED if rng.random() < 0.5 else Severity.YELLOW,
                correlation_keys=(f"deploy:deploy-{n % 1000}",),
            )
            sent.append(item)
            items.append(item)
        out.append(items)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace) -> None:
    pg = EmbeddedPostgres(fsync=True).start()
    try:
        conn = await asyncpg.connect(pg.url)
        await migrate(conn)
        if args.codec:
            await init_connection(conn)
        data = make_batches(args.batch, args.batches)
        await apply_batch(conn, data[0])  # warm-up
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        t0, cpu0, db0 = time.perf_counter(), time.process_time(), _cpu_seconds(backend)
        total = events = 0
        for items in data[1:]:
            result = await apply_batch(conn, items)
            total += len(items)
            events += result.events_written
        elapsed = time.perf_counter() - t0
        cpu, db = time.process_time() - cpu0, _cpu_seconds(backend) - db0
        print(
            f"batch={args.batch} batches={args.batches - 1} inputs={total} events={events} "
            f"{elapsed:.2f}s -> {total / elapsed:,.0f} inputs/s, "
            f"{elapsed / (args.batches - 1) * 1000:.1f} ms/batch, "
            f"CPU per input: worker {cpu / total * 1e6:.0f} us, "
            f"PostgreSQL backend {db / total * 1e6:.0f} us"
        )
        await conn.close()
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=41)
    parser.add_argument("--codec", action="store_true", help="register the jsonb codec first")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
