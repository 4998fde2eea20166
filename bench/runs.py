"""The worker phases: sustained throughput at saturation, and latency at a fixed offered load.

Both drive the real worker (`ingest-worker run`, a separate process) against a fresh database and
topics of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from ingest_worker.service.embedded import EmbeddedServices

from .fleet import WorkerFleet
from .generate import EVENT_CATEGORIES, GenRecord, Stream
from .harness import (
    CommitObserver,
    CpuMeter,
    RssSampler,
    Topics,
    WorkerProc,
    count_records,
    fresh_database,
    log,
    make_producer,
    peak_rss,
    rss_summary,
    table_counts,
)
from .timeline import summarize as timeline_summary
from .wal import WalMeter


@dataclass
class Context:
    services: EmbeddedServices
    results_dir: Path
    worker_overrides: dict[str, str] = field(default_factory=dict)
    #: Worker processes in the saturation runs' consumer group (`--processes`).
    processes: int = 1
    #: Run the main saturation worker under `bench.timeline_worker` (`--no-timeline`: plain).
    timeline: bool = True

    @property
    def bootstrap(self) -> str:
        return self.services.kafka.bootstrap_servers

    @property
    def admin_url(self) -> str:
        return self.services.postgres.url

    @property
    def logs(self) -> Path:
        """Worker logs (`tmp-*` is git-ignored)."""
        return self.results_dir / "tmp-logs"


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max (nearest rank) in milliseconds."""
    if not values:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, int(q * n + 0.999999) - 1))] * 1000, 2)

    return {
        "count": n,
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(sum(ordered) / n * 1000, 2),
    }


async def _start_worker(
    ctx: Context, name: str, topics: Topics, command: list[str] | None
) -> tuple[WorkerProc, str, str]:
    url = await fresh_database(ctx.admin_url, f"bench_{name}")
    group = f"bench-{name}"
    env = _worker_env(ctx, url, group, topics)
    log_path = ctx.logs / f"{name}.log"
    log_path.unlink(missing_ok=True)
    return WorkerProc(env=env, log_path=log_path, command=command).start(), url, group


def _worker_env(ctx: Context, url: str, group: str, topics: Topics) -> dict[str, str]:
    return WorkerProc.environment(
        bootstrap=ctx.bootstrap,
        database_url=url,
        group=group,
        topics=topics,
        overrides=ctx.worker_overrides,
    )


async def _start_fleet(
    ctx: Context, name: str, topics: Topics, commands: list[list[str] | None]
) -> tuple[WorkerFleet, str, str]:
    """`ctx.processes` workers in one group (one, the default, is the plain worker)."""
    url = await fresh_database(ctx.admin_url, f"bench_{name}")
    group = f"bench-{name}"
    env = _worker_env(ctx, url, group, topics)
    fleet = WorkerFleet(env, ctx.logs / f"{name}.log", ctx.processes, commands)
    return fleet.start(), url, group


def timeline_path(ctx: Context, name: str, index: int = 0) -> Path:
    return ctx.results_dir / f"tmp-timeline-{name}.{index}.jsonl"


async def read_command_results(
    bootstrap: str, topics: Topics, expected: int, idle_seconds: float = 1.5
) -> dict[str, Any]:
    """The command outcomes published to `incident.command-results`: records, distinct ce_ids,
    and the distinct results counted by (type, outcome, reason)."""
    partitions = topics.result_partitions()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-results"
    )
    await consumer.start()
    records = 0
    results: dict[str, dict[str, Any]] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_seconds:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for part in batch.values():
                for r in part:
                    records += 1
                    idle_since = time.monotonic()
                    ce_id = dict(r.headers).get("ce_id", b"").decode()
                    with contextlib.suppress(ValueError, TypeError):
                        results.setdefault(ce_id, json.loads(r.value))
            if expected and len(results) >= expected:
                idle_seconds = min(idle_seconds, 0.5)
    finally:
        await consumer.stop()
    by: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for result in results.values():
        outcome = str(result.get("outcome"))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        name = f"{result.get('type')} → {outcome}" + (
            f" ({result['reason']})" if result.get("reason") else ""
        )
        by[name] = by.get(name, 0) + 1
    return {
        "records": records,
        "distinct": len(results),
        "outcomes": dict(sorted(outcomes.items())),
        "by_type_outcome_reason": dict(sorted(by.items(), key=lambda kv: -kv[1])),
    }


_EXACT = ("created", "updated", "duplicate", "recovered", "ignored", "dead_lettered")
_LIFECYCLE = ("applied", "noop", "rejected")


async def _verify(
    ctx: Context, stream: Stream, topics: Topics, url: str, metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """Did the worker do exactly what the stream asks? Incidents, dead letters and every exact
    outcome per topic exactly; commands and source transitions: their outcomes sum to their
    number, each applied one made one event, every command has one receipt and a published
    result."""
    by_topic = (metrics or {}).get("outcomes_by_topic", {})
    per_kind: dict[str, Any] = {}
    outcomes_ok = metrics is not None
    applied = 0
    for kind, topic in topics.by_kind.items():
        if not stream.kinds.get(kind):
            continue
        got = by_topic.get(topic, {})
        want = stream.expected_outcomes(kind)
        lifecycle = stream.lifecycle_effects(kind)
        got_exact = {k: got.get(k, 0) for k in _EXACT if got.get(k, 0) or want.get(k, 0)}
        got_lifecycle = {k: got.get(k, 0) for k in _LIFECYCLE if got.get(k, 0)}
        applied += got.get("applied", 0)
        # A recovery whose scope holds no incident is `recovered` by the contract
        # (`core.lifecycle.Outcome.RECOVERED`), but the worker may count it as `duplicate`: accept
        # either for those, exactly, and report how many went which way.
        unmatched = stream.by_kind.get((kind, "recovery_unmatched"), 0)
        as_duplicate = want.get("recovered", 0) - got.get("recovered", 0)
        same = {k: v for k, v in got_exact.items() if k not in ("recovered", "duplicate")}
        ok = (
            same == {k: want.get(k, 0) for k in same}
            and 0 <= as_duplicate <= unmatched
            and got.get("recovered", 0) + got.get("duplicate", 0)
            == want.get("recovered", 0) + want.get("duplicate", 0)
            and sum(got_lifecycle.values()) == lifecycle
        )
        outcomes_ok &= ok
        per_kind[kind] = {
            "expected": want,
            "expected_lifecycle": lifecycle,
            "actual": got_exact,
            "actual_lifecycle": got_lifecycle,
            "unmatched_recoveries": unmatched,
            "unmatched_recoveries_counted_as_duplicate": as_duplicate if unmatched else 0,
            "ok": ok,
        }
    counts = await table_counts(url)
    events_expected = stream.expected_events + applied
    events = await count_records(ctx.bootstrap, topics.event_partitions(), events_expected)
    dlq = await count_records(
        ctx.bootstrap, topics.dead_letter_partitions(), stream.dead_letters, idle_seconds=1.5
    )
    commands = len(stream.command_ids)
    results = await read_command_results(ctx.bootstrap, topics, commands) if commands else None
    expected = {
        "incidents": stream.expected_incidents,
        "incident_events": events_expected,
        "outbox": 0,
        "events_topic": events_expected,
        "dead_letter_topic": stream.dead_letters,
        "command_receipts": commands,
        "command_results_outbox": 0,
        "command_results_distinct": commands,
    }
    actual = {
        "incidents": counts["incidents"],
        "incident_events": counts["incident_events"],
        "outbox": counts["outbox"],
        "events_topic": events,
        "dead_letter_topic": dlq,
        "command_receipts": counts["command_receipts"],
        "command_results_outbox": counts["command_results_outbox"],
        "command_results_distinct": results["distinct"] if results else 0,
    }
    return {
        "expected": expected,
        "actual": actual,
        "events_from_signals": stream.expected_events,
        "events_from_commands_and_transitions": applied,
        "per_kind": per_kind,
        "command_results": results,
        "worker_outcomes": None if metrics is None else metrics["outcomes"],
        "commands_and_transitions": None
        if metrics is None
        else metrics.get("commands_and_transitions"),
        "ok": expected == actual and outcomes_ok,
    }


def _batches(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Batches the worker processed, their mean size and mean fetch-to-commit time (/metrics)."""
    if metrics is None:
        return None
    return {k: metrics[k] for k in ("batches", "mean_batch_records", "mean_batch_seconds")}


async def _recorded_at(url: str) -> dict[str, float]:
    """Event id → its `recorded_at` (the start of the transaction that wrote it), epoch seconds."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id::text AS id, extract(epoch FROM recorded_at)::float8 AS at "
            "FROM incident_events"
        )
    finally:
        await conn.close()
    return {r["id"]: r["at"] for r in rows}


def _per_10k(cpu: dict[str, float], signals: int) -> dict[str, float]:
    return {
        k: round(v / signals * 10_000, 3)
        for k, v in cpu.items()
        if k in ("worker", "postgres", "broker", "bench_process", "others")
    }


#: Kinds produced while the saturation worker runs rather than before (see `saturation`).
DEFERRED_KINDS = frozenset({"commands"})


def split_deferred(stream: Stream) -> tuple[list[GenRecord], list[tuple[int, GenRecord]]]:
    """(records to pre-produce, [(signals before it in the stream, deferred record)])."""
    pre: list[GenRecord] = []
    deferred: list[tuple[int, GenRecord]] = []
    for record in stream.records:
        if record.kind in DEFERRED_KINDS:
            deferred.append((len(pre), record))
        else:
            pre.append(record)
    return pre, deferred


# ------------------------------------------------------------ saturation
async def saturation(
    ctx: Context,
    stream: Stream,
    topics: Topics,
    *,
    name: str = "saturation",
    command: list[str] | None = None,
    timeout: float = 1800.0,
    on_start: Callable[[WorkerProc], Any] | None = None,
) -> dict[str, Any]:
    """The stream's signals are already in the topics (`pre_produced`); start the worker and time
    it to the last commit (committed offsets of its group) and to the last event published (its
    /metrics counter). Commands are fed while it runs: each is produced once the worker has
    committed the signals before it in the stream (an operator acknowledges an incident after
    it exists; pre-produced, the small commands topic would be consumed long before the
    incidents it targets)."""
    total = len(stream.records)
    pre, deferred = split_deferred(stream)
    expected_events = stream.expected_events
    per_topic_total: dict[str, int] = {}
    by_kind = topics.by_kind
    for record in stream.records:
        topic = by_kind[record.kind]
        per_topic_total[topic] = per_topic_total.get(topic, 0) + 1
    done_at: dict[str, float] = {}
    deferred_topics = {by_kind[r.kind] for _, r in deferred}
    producer = make_producer(ctx.bootstrap, linger_ms=1, client_id="bench-command-feeder")
    await producer.start()
    fed: list[asyncio.Future[Any]] = []
    feed_index = 0
    timeline = command is None and ctx.timeline and name == "saturation"
    commands: list[list[str] | None] = [command] * ctx.processes
    if timeline:
        commands = [
            [sys.executable, "-m", "bench.timeline_worker", str(timeline_path(ctx, name, i))]
            for i in range(ctx.processes)
        ]
    worker, url, group = await _start_fleet(ctx, name, topics, commands)
    spawned = time.monotonic()
    if on_start is not None:
        on_start(worker.workers[0])
    rss = RssSampler(worker.pid).start()
    metrics: dict[str, Any] | None = None
    wal_meter = WalMeter(ctx.admin_url)
    wal: dict[str, Any] = {}
    try:
        meter = CpuMeter(ctx.services, worker.pids)
        ready = await worker.wait_ready()
        await wal_meter.start()
        cpu_ready = meter.snapshot()
        log(f"{name}: worker ready after {ready - spawned:.1f}s; consuming {total:,} records")
        progress: list[tuple[float, int]] = []
        first_commit: tuple[float, int] | None = None
        async with CommitObserver(ctx.bootstrap, group, topics.signal_partitions()) as observer:
            while True:
                by_topic = await observer.committed_by_topic()
                committed = sum(by_topic.values())
                now = time.monotonic()
                progress.append((now, committed))
                for topic, n in by_topic.items():
                    if topic not in done_at and n >= per_topic_total.get(topic, 0):
                        done_at[topic] = now
                signals_done = sum(n for t, n in by_topic.items() if t not in deferred_topics)
                while feed_index < len(deferred) and deferred[feed_index][0] <= signals_done:
                    record = deferred[feed_index][1]
                    fed.append(
                        await producer.send(
                            by_kind[record.kind], value=record.value, key=record.key
                        )
                    )
                    feed_index += 1
                if committed and first_commit is None:
                    first_commit = (now, committed)
                if committed >= total:
                    last_commit = now
                    break
                if worker.exited():
                    raise RuntimeError(f"worker exited early:\n{worker.tail()}")
                if now - ready > timeout:
                    raise TimeoutError(
                        f"{name}: {committed:,}/{total:,} committed after {timeout}s"
                    )
                await asyncio.sleep(0.1)
        cpu_commit = meter.snapshot()
        while True:
            metrics = await worker.metrics()
            now = time.monotonic()
            if metrics is not None and metrics["events_published"] >= expected_events:
                last_event = now
                break
            if now - last_commit > 300:
                raise TimeoutError(f"{name}: events not all published: {metrics}")
            await asyncio.sleep(0.05)
        cpu_done = meter.snapshot()
        hwm = peak_rss(worker.pid)
        wal = await wal_meter.stop(url, total)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.gather(*fed)
        with contextlib.suppress(Exception):
            await producer.stop()
        await rss.stop()
        exit_code = await worker.stop()
    assert first_commit is not None
    checks = await _verify(ctx, stream, topics, url, metrics)
    kind_of = topics.kind_of
    per_kind = {
        kind_of[topic]: {
            "records": n,
            "share": round(n / total, 4),
            "seconds_to_its_last_commit": round(done_at[topic] - ready, 3)
            if topic in done_at
            else None,
            "records_per_second_to_its_last_commit": round(n / (done_at[topic] - ready), 1)
            if topic in done_at and done_at[topic] > ready
            else None,
            "fed_while_running": topic in deferred_topics,
        }
        for topic, n in sorted(per_topic_total.items())
    }
    cpu = CpuMeter.delta(cpu_ready, cpu_done)
    commit_seconds = last_commit - ready
    event_seconds = last_event - ready
    steady_seconds = last_commit - first_commit[0]
    result = {
        "records": total,
        "expected_events": expected_events,
        "startup_seconds": round(ready - spawned, 2),
        "seconds_to_last_commit": round(commit_seconds, 3),
        "seconds_to_last_event": round(event_seconds, 3),
        "throughput_to_last_commit": round(total / commit_seconds, 1),
        "throughput_to_last_event": round(total / event_seconds, 1),
        "steady_throughput_first_to_last_commit": round(
            (total - first_commit[1]) / steady_seconds, 1
        )
        if steady_seconds > 0
        else None,
        "events_per_second": round(expected_events / event_seconds, 1),
        "cpu_seconds": cpu,
        "cpu_seconds_to_last_commit": CpuMeter.delta(cpu_ready, cpu_commit),
        "cpu_seconds_per_10k_signals": _per_10k(cpu, total),
        "peak_rss_mib": round(hwm / 1024 / 1024, 1) if hwm else None,
        "rss": rss_summary(rss.samples, ready, last_event),
        "progress": [
            (round(t - ready, 2), c) for t, c in progress[:: max(1, len(progress) // 200)]
        ],
        "worker_exit_code": exit_code,
        "worker_log_lines": worker.warnings(),
        "worker_batches": _batches(metrics),
        "worker_processes": ctx.processes,
        "per_process_signals": (metrics or {}).get("per_process_signals"),
        "wal": wal,
        "timeline": timeline_summary(timeline_path(ctx, name)) if timeline else None,
        "per_kind": per_kind,
        "pre_produced": len(pre),
        "fed_while_running": len(deferred),
        "checks": checks,
    }
    log(
        f"{name}: {result['throughput_to_last_commit']:,.0f} signals/s to last commit, "
        f"{result['throughput_to_last_event']:,.0f}/s to last event; worker CPU "
        f"{result['cpu_seconds_per_10k_signals']['worker']:.2f}s/10k; checks ok={checks['ok']}"
    )
    return result


# ------------------------------------------------------------ latency
#: Event types a trigger or recovery signal makes (the others come from commands and sources).
SIGNAL_EVENT_TYPES = frozenset({"incident.created", "incident.updated", "incident.resolved"})


async def latency(
    ctx: Context,
    stream: Stream,
    topics: Topics,
    rate: float,
    *,
    name: str,
    drain_timeout: float | None = None,
) -> dict[str, Any]:
    """Start the worker, then produce the stream at `rate` records/s (open loop: each record has
    an intended send time, and latency is measured from it, so a late producer cannot hide delay).

    Latency of a signal = the Kafka timestamp of its `incident.events` record (set by the worker's
    producer when it publishes) minus the signal's intended send time (also its record timestamp);
    `received` uses the time our consumer got the event instead.
    """
    records = stream.records
    n = len(records)
    if drain_timeout is None:
        drain_timeout = max(180.0, 4 * n / rate)
    expected_events = stream.expected_events
    worker, url, group = await _start_worker(ctx, name, topics, None)
    rss = RssSampler(worker.pid).start()
    metrics: dict[str, Any] | None = None
    #: (subject, event id, event record timestamp ms, received at, type, command id or None)
    received: list[tuple[str | None, str | None, int, float, str, str | None]] = []
    signal_events = 0
    events_consumer = AIOKafkaConsumer(
        bootstrap_servers=ctx.bootstrap, enable_auto_commit=False, client_id="bench-events"
    )
    collector: asyncio.Task[None] | None = None
    # linger 5 ms (Kafka's own default since 4.0): fewer, larger produce requests; it counts
    # in the measured latency, as it would for a real producer.
    producer = make_producer(ctx.bootstrap, linger_ms=5, client_id="bench-paced-producer")
    try:
        meter = CpuMeter(ctx.services, worker.pid)
        await worker.wait_ready()
        await events_consumer.start()
        events_consumer.assign(topics.event_partitions())
        await events_consumer.seek_to_beginning(*topics.event_partitions())
        await producer.start()

        async def collect() -> None:
            nonlocal signal_events
            while signal_events < expected_events:
                batch = await events_consumer.getmany(timeout_ms=100)
                now = time.time()
                for part in batch.values():
                    for r in part:
                        headers = dict(r.headers)
                        subject = headers.get("ce_subject")
                        event = headers.get("ce_id")
                        kind = headers.get("ce_type", b"").decode()
                        command_id = None
                        if kind in SIGNAL_EVENT_TYPES:
                            signal_events += 1
                        else:
                            with contextlib.suppress(ValueError, TypeError, AttributeError):
                                command_id = json.loads(r.value)["cause"].get("command_id")
                        received.append(
                            (
                                subject.decode() if subject else None,
                                event.decode() if event else None,
                                r.timestamp,
                                now,
                                kind,
                                command_id,
                            )
                        )

        collector = asyncio.create_task(collect())
        by_kind = topics.by_kind
        intended = [0.0] * n
        futures = []
        lag_max = 0.0
        log(f"{name}: producing {n:,} records at {rate:,.0f}/s")
        cpu0 = meter.snapshot()
        t0_wall, t0 = time.time(), time.monotonic()
        i = 0
        async with CommitObserver(ctx.bootstrap, group, topics.signal_partitions()) as observer:
            progress: list[tuple[float, int]] = []
            next_poll = t0
            while i < n:
                due = min(n, int((time.monotonic() - t0) * rate) + 1)
                while i < due:
                    record = records[i]
                    at = t0_wall + i / rate
                    intended[i] = at
                    futures.append(
                        await producer.send(
                            by_kind[record.kind],
                            value=record.value,
                            key=record.key,
                            timestamp_ms=int(at * 1000),
                        )
                    )
                    i += 1
                lag_max = max(lag_max, time.time() - intended[i - 1])
                now = time.monotonic()
                if now >= next_poll:
                    progress.append((now, await observer.committed()))
                    next_poll = now + 0.5
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            await asyncio.gather(*futures)
            send_seconds = time.monotonic() - t0
            deadline = time.monotonic() + drain_timeout
            drained = True
            while True:
                committed = await observer.committed()
                now = time.monotonic()
                progress.append((now, committed))
                if committed >= n:
                    last_commit = now
                    break
                if now > deadline:
                    # Report what was measured; the missing events count as not delivered.
                    log(f"{name}: only {committed:,}/{n:,} committed {drain_timeout:.0f}s after")
                    last_commit = now
                    drained = False
                    break
                await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(asyncio.shield(collector), max(5.0, deadline - time.monotonic()))
        except TimeoutError:
            log(f"{name}: only {len(received):,}/{expected_events:,} events received")
        last_event = time.monotonic()
        cpu1 = meter.snapshot()
        metrics = await worker.metrics()
        hwm = peak_rss(worker.pid)
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(BaseException):
                await collector
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await events_consumer.stop()
        await rss.stop()
        exit_code = await worker.stop()

    # Match the k-th signal-caused event of an incident with its k-th event-making signal (same
    # partition, same order); command events with their command (by id), source transitions
    # (PagerDuty acknowledgements) with the transitions of their incident in order.
    pending: dict[str, deque[float]] = {}
    transitions: dict[str, deque[float]] = {}
    commands_sent: dict[str, float] = {}
    for index, record in enumerate(records):
        if record.command_id is not None:
            commands_sent.setdefault(record.command_id, intended[index])
            continue
        for category, key in record.effects:
            if category in EVENT_CATEGORIES and key is not None:
                pending.setdefault(key, deque()).append(intended[index])
            elif category == "transition" and key is not None:
                transitions.setdefault(key, deque()).append(intended[index])
    # Where the time goes: the batch transaction's start (`incident_events.recorded_at` is
    # now(), the transaction start) splits each latency into "before the write" (fetch, batching,
    # decode, waiting for the previous batch) and "write + commit + outbox publish".
    recorded = await _recorded_at(url)
    to_record: list[float] = []
    to_received: list[float] = []
    before_write: list[float] = []
    write_to_event: list[float] = []
    per_second: dict[int, list[float]] = {}
    unmatched = 0
    lifecycle_latency: list[float] = []
    for subject, event_id, ts_ms, got, kind, command_id in received:
        if kind not in SIGNAL_EVENT_TYPES:
            sent_at = commands_sent.get(command_id or "")
            if sent_at is None:
                queue = transitions.get(subject or "")
                sent_at = queue.popleft() if queue else None
            if sent_at is not None:
                lifecycle_latency.append(ts_ms / 1000 - sent_at)
            continue
        queue = pending.get(subject or "")
        if not queue:
            unmatched += 1
            continue
        sent = queue.popleft()
        to_record.append(ts_ms / 1000 - sent)
        to_received.append(got - sent)
        per_second.setdefault(int(sent - t0_wall), []).append(ts_ms / 1000 - sent)
        started = recorded.get(event_id or "")
        if started is not None:
            before_write.append(started - sent)
            write_to_event.append(ts_ms / 1000 - started)
    timeline = [
        {"second": k, **{q: v for q, v in percentiles(per_second[k]).items() if q != "mean_ms"}}
        for k in sorted(per_second)
    ]
    after_warmup = [x for k in per_second if k >= 2 for x in per_second[k]]
    cpu = CpuMeter.delta(cpu0, cpu1)
    checks = await _verify(ctx, stream, topics, url, metrics)
    result = {
        "offered_per_second": rate,
        "records": n,
        "send_seconds": round(send_seconds, 3),
        "achieved_offered_per_second": round(n / send_seconds, 1),
        "producer_max_lag_ms": round(lag_max * 1000, 1),
        "throughput_to_last_commit": round(committed / (last_commit - t0), 1),
        "drained": drained,
        "committed": committed,
        "expected_events": expected_events,
        "events_received": len(received),
        "unmatched_events": unmatched,
        "latency_to_event_record": percentiles(to_record),
        "latency_to_event_received": percentiles(to_received),
        "latency_to_event_record_after_2s": percentiles(after_warmup),
        "latency_commands_and_transitions_to_event_record": percentiles(lifecycle_latency),
        "latency_breakdown": {
            "send_to_write_transaction_start": percentiles(before_write),
            "write_transaction_start_to_event_record": percentiles(write_to_event),
        },
        "latency_per_second_of_sending": timeline,
        "cpu_seconds": cpu,
        "cpu_seconds_per_10k_signals": _per_10k(cpu, n),
        "peak_rss_mib": round(hwm / 1024 / 1024, 1) if hwm else None,
        "rss": rss_summary(rss.samples, t0, last_event),
        "progress": [(round(t - t0, 2), c) for t, c in progress],
        "worker_exit_code": exit_code,
        "worker_log_lines": worker.warnings(),
        "worker_batches": _batches(metrics),
        "checks": checks,
    }
    lat = result["latency_to_event_record"]
    log(
        f"{name}: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; "
        f"throughput {result['throughput_to_last_commit']:,.0f}/s; checks ok={checks['ok']}"
    )
    return result
