"""The machine's own limits for this pipeline, on the same data and services as the worker.

- consume-only: aiokafka fetch + `json.loads` of every value + an offset commit per batch of 500,
  no database (the most a consumer of these topics can do here);
- write-only: the stream's incident inputs (decoded beforehand, untimed) written with the
  project's batch SQL, batches of 500 inputs, one connection, straight from memory, no Kafka:
  the statements `store.apply_batch` sends, replayed (the most PostgreSQL takes here); the
  `apply_batch` run that recorded them, Python planning included, is reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import RejectedPart, SignalEffect
from ingest_worker.sources.decode import decode_record
from ingest_worker.store.incidents import apply_batch, init_connection
from ingest_worker.store.migrations import migrate

from .generate import SOURCE_OF, GenRecord
from .harness import Topics, fresh_database, log

BATCH = 500
MAX_MESSAGE_BYTES = 1_048_576


async def consume_only(bootstrap: str, topics: Topics, total: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench-consume-only",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="bench-consume-only",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 1024,
        fetch_max_bytes=52_428_800,
    )
    await consumer.start()
    try:
        consumer.assign(topics.signal_partitions())
        await consumer.seek_to_beginning(*topics.signal_partitions())
        count = parsed = 0
        started: float | None = None
        while count < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    try:
                        json.loads(record.value)
                        parsed += 1
                    except ValueError:
                        pass
                    count += 1
            await consumer.commit()
        assert started is not None
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    result = {
        "records": count,
        "parsed": parsed,
        "seconds": round(elapsed, 3),
        "throughput": round(count / elapsed, 1),
    }
    log(f"consume-only: {count:,} records in {elapsed:.2f}s -> {result['throughput']:,.0f}/s")
    return result


def _decode_chunk(chunk: Sequence[tuple[str, bytes]]) -> list[SignalEffect]:
    out: list[SignalEffect] = []
    for kind, value in chunk:
        with contextlib.suppress(InvalidSignal):
            effects = decode_record(SOURCE_OF[kind], value, max_bytes=MAX_MESSAGE_BYTES)
            out.extend(e for e in effects if not isinstance(e, RejectedPart))
    return out


async def decode_inputs(records: Sequence[GenRecord]) -> tuple[list[SignalEffect], float]:
    """Every incident input of the stream, in stream order (worker processes; not timed as I/O)."""
    started = time.perf_counter()
    items = [(r.kind, r.value) for r in records]
    size = 5000
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    loop = asyncio.get_running_loop()
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = await asyncio.gather(
            *(loop.run_in_executor(pool, _decode_chunk, c) for c in chunks)
        )
    inputs = [i for part in parts for i in part]
    return inputs, time.perf_counter() - started


class _Recorder:
    """Stands in for the asyncpg connection of `apply_batch` and records every statement it runs."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []

    def transaction(self, **options: Any) -> Any:
        return self._conn.transaction(**options)

    async def execute(self, query: str, *args: Any) -> Any:
        self.calls.append(("execute", query, args))
        return await self._conn.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        self.calls.append(("fetch", query, args))
        return await self._conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.calls.append(("fetchrow", query, args))
        return await self._conn.fetchrow(query, *args)


async def write_only(admin_url: str, records: Sequence[GenRecord]) -> dict[str, Any]:
    """Two measurements on fresh databases, batches of 500 inputs, one connection:

    1. `apply_batch` from memory: the project's store function, its Python planning included;
    2. the limit: the exact statements and parameters that run 1 sent, replayed from memory in
       the same transactions (the same rows written with the project's batch SQL, nothing else).
    """
    inputs, decode_seconds = await decode_inputs(records)
    log(f"write-only: decoded {len(inputs):,} inputs in {decode_seconds:.1f}s (untimed)")
    url = await fresh_database(admin_url, "bench_write_store")
    conn = await asyncpg.connect(url)
    batches: list[list[tuple[str, str, tuple[Any, ...]]]] = []
    try:
        await migrate(conn)
        await init_connection(conn)
        store_seconds = 0.0
        events = 0
        for start in range(0, len(inputs), BATCH):
            recorder = _Recorder(conn)
            t = time.perf_counter()
            result = await apply_batch(recorder, inputs[start : start + BATCH])  # type: ignore[arg-type]
            store_seconds += time.perf_counter() - t
            events += result.events_written
            batches.append(recorder.calls)
    finally:
        await conn.close()
    log(
        f"write-only: apply_batch from memory: {len(inputs):,} inputs in {store_seconds:.2f}s -> "
        f"{len(records) / store_seconds:,.0f} signals/s"
    )
    url = await fresh_database(admin_url, "bench_write_only")
    conn = await asyncpg.connect(url)
    statements = 0
    try:
        await migrate(conn)
        await init_connection(conn)
        sql_seconds = 0.0
        for calls in batches:
            t = time.perf_counter()
            async with conn.transaction(isolation="read_committed"):
                for method, query, args in calls:
                    await getattr(conn, method)(query, *args)
            sql_seconds += time.perf_counter() - t
            statements += len(calls)
    finally:
        await conn.close()
    result = {
        "stream_records": len(records),
        "inputs": len(inputs),
        "batches": len(batches),
        "statements": statements,
        "events_written": events,
        "seconds": round(sql_seconds, 3),
        # Signals per second: the stream's records per second of write time (invalid and ignored
        # records write nothing, exactly as in the worker), so that it compares with the worker.
        "throughput": round(len(records) / sql_seconds, 1),
        "inputs_per_second": round(len(inputs) / sql_seconds, 1),
        "apply_batch_seconds": round(store_seconds, 3),
        "apply_batch_throughput": round(len(records) / store_seconds, 1),
        "decode_seconds_untimed": round(decode_seconds, 2),
    }
    log(
        f"write-only: SQL replay: {statements:,} statements in {sql_seconds:.2f}s -> "
        f"{result['throughput']:,.0f} signals/s ({result['inputs_per_second']:,.0f} inputs/s)"
    )
    return result
