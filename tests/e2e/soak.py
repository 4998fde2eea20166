"""Load and fault drivers shared by the fault suite, and `make soak`: the same faults again and
again under a steady load, while the memory of a long-lived worker is watched.

    python -m tests.e2e.soak --duration 600 --rate 500

The soak runs two workers in one consumer group. The first lives through the whole run and is the
one whose RSS is sampled: it goes through every PostgreSQL outage, broker pause and rebalance. The
second is the victim of the kills: SIGKILL, SIGTERM, and replacement by a newcomer. At the end
the state is checked against the independent expectation, as in the fault suite. The exit status
is non-zero when a check fails or the RSS grew by more than `--max-rss-growth` percent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.e2e.expected import FAMILIES, Expected, Record, compare, observe, signal_stream
from tests.e2e.process import WorkerProcess
from tests.support import eventually, someone_waits_on_a_lock

#: Settings of every scenario: a short session timeout so that the group notices a SIGKILLed
#: member in ~3 s instead of 10 s (each restart after a kill waits for it), fast retries.
SCENARIO_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 3000,
    "shutdown_grace_seconds": 10.0,
    "outbox_poll_seconds": 0.2,
    "retry_initial_seconds": 0.05,
    "retry_max_seconds": 0.5,
}

#: Large enough for the 10 MB hostile records (the producer refuses bigger requests client-side).
PRODUCER_MAX_REQUEST = 32 * 1024 * 1024
TICK_SECONDS = 0.05


def topics_of(settings: Settings) -> dict[str, str]:
    """Signal family → topic name (`topic_<family>`), and "commands" → the commands topic."""
    topics = {family: str(getattr(settings, f"topic_{family}")) for family in FAMILIES}
    topics["commands"] = settings.topic_commands
    return topics


# --- load ---------------------------------------------------------------------------------------


class Feeder:
    """Produces records in the background at a steady rate (records per second).

    `hold_back` trailing records wait for `release()`: a fault injected before the release is
    guaranteed to happen mid-stream, with records still to come. `on_sent` sees every record
    once the broker acknowledged it.
    """

    def __init__(
        self,
        settings: Settings,
        records: Iterable[Record],
        *,
        rate: float,
        hold_back: int = 0,
        on_sent: Callable[[Record], None] | None = None,
    ) -> None:
        self._bootstrap = settings.kafka_bootstrap_servers
        self._topics = topics_of(settings)
        self._rate = rate
        self._on_sent = on_sent
        if hold_back:
            listed = list(records)
            self._head: Iterable[Record] = listed[:-hold_back]
            self._tail: list[Record] = listed[-hold_back:]
        else:
            self._head, self._tail = records, []
        self._released = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.head_done = asyncio.Event()

    async def __aenter__(self) -> Feeder:
        self._task = asyncio.create_task(self._run(), name="feeder")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        self._released.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        """Stop producing after the current tick (the soak's end); `finished()` then returns once
        the records already sent are acknowledged."""
        self._stopping.set()
        self._released.set()

    async def finished(self, timeout: float = 120.0) -> None:
        """Wait until every record was produced (releasing the held-back tail)."""
        assert self._task is not None
        self.release()
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            max_request_size=PRODUCER_MAX_REQUEST,
            linger_ms=5,
            acks="all",
            request_timeout_ms=60_000,
        )
        await producer.start()
        try:
            await self._produce(producer, self._head)
            self.head_done.set()
            await self._released.wait()
            await self._produce(producer, self._tail)
        finally:
            await producer.stop()

    async def _produce(self, producer: AIOKafkaProducer, records: Iterable[Record]) -> None:
        """Every 50 ms, send what the rate allows so far and wait for the acknowledgements."""
        remaining = iter(records)
        started, produced = time.monotonic(), 0
        while not self._stopping.is_set():
            due = int((time.monotonic() - started + TICK_SECONDS) * self._rate) - produced
            chunk = list(itertools.islice(remaining, max(0, min(due, 1000))))
            if due > 0 and not chunk:
                return
            pending = [
                (
                    record,
                    await producer.send(
                        self._topics[record.family],
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                        partition=record.partition,
                    ),
                )
                for record in chunk
            ]
            produced += len(chunk)
            await self._acknowledged(pending)
            await asyncio.sleep(TICK_SECONDS)

    async def _acknowledged(self, pending: list[tuple[Record, asyncio.Future[Any]]]) -> None:
        for record, future in pending:
            await future
            self.sent += 1
            if self._on_sent is not None:
                self._on_sent(record)
        pending.clear()


class CommandFeeder:
    """Produces command records (family "commands") in the background, each once the incident
    key it `requires` is committed (commands commute with signals only on existing incidents),
    in stream order otherwise; copies of a command go out as they come. It watches the database
    through its own reconnecting connection, so it keeps going across every fault."""

    def __init__(self, settings: Settings, records: Iterable[Record]) -> None:
        self._settings = settings
        self._records = list(records)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def __aenter__(self) -> CommandFeeder:
        self._task = asyncio.create_task(self._run(), name="command-feeder")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def finished(self, timeout: float = 180.0) -> None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def _run(self) -> None:
        database = Database(self._settings.database_url.get_secret_value())
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            linger_ms=5,
            acks="all",
            request_timeout_ms=60_000,
        )
        await producer.start()
        try:
            waiting = list(self._records)
            while waiting:
                keys = await database.keys() or set()
                ready = [
                    r for r in waiting
                    if r.command is None or r.command.requires is None
                    or r.command.requires in keys
                ]  # fmt: skip
                if ready:
                    chosen = {id(r) for r in ready}
                    waiting = [r for r in waiting if id(r) not in chosen]
                    futures = [
                        await producer.send(self._settings.topic_commands, value=r.value, key=r.key)
                        for r in ready
                    ]
                    for future in futures:
                        await future
                        self.sent += 1
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()
            await database.close()


# --- the workers --------------------------------------------------------------------------------


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


async def is_ready(worker: WorkerProcess) -> bool:
    return await asyncio.to_thread(http_status, worker.http_port, "/readyz") == 200


@dataclass
class Fleet:
    """The `ingest-worker run` processes of one scenario, each with its own log file."""

    settings: Settings
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    async def start(self, timeout: float = 120.0) -> WorkerProcess:
        """Start one more worker and wait until it is ready (joined, database and broker up)."""
        worker = WorkerProcess(self.settings, self.log_dir / f"worker-{len(self.workers) + 1}.log")
        self.workers.append(worker.start())
        await worker.wait_ready(timeout)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        worker.kill()

    async def terminate(self, worker: WorkerProcess) -> tuple[int, float]:
        """SIGTERM: (exit code, seconds until exit)."""
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = await worker.wait_exit(self.settings.shutdown_grace_seconds + 15)
        return code, time.monotonic() - started

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    async def stop_all(self) -> list[int]:
        """SIGTERM every running worker; their exit codes."""
        return [(await self.terminate(w))[0] for w in self.running]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()

    def logs(self) -> list[Path]:
        return [w.log_path for w in self.workers]


class Database:
    """One reconnecting connection for observing progress, also across PostgreSQL outages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None

    async def fetchrow(self, query: str) -> asyncpg.Record | None:
        """The row, or None while the database cannot be reached."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=2)
            return await self._conn.fetchrow(query, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await self.close()
            return None

    async def progress(self) -> tuple[int, int, int] | None:
        """(incidents, occurrences, outbox backlog): what has been committed so far."""
        found = await self.progress_with_commands()
        return None if found is None else found[:3]

    async def progress_with_commands(self) -> tuple[int, int, int, int] | None:
        """(incidents, occurrences, event and result outbox backlog, command receipts)."""
        row = await self.fetchrow(
            "SELECT (SELECT count(*) FROM incidents), "
            "(SELECT coalesce(sum(occurrence_count), 0) FROM incidents), "
            "(SELECT count(*) FROM outbox) + (SELECT count(*) FROM command_results_outbox), "
            "(SELECT count(*) FROM command_receipts)"
        )
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    async def keys(self) -> set[str] | None:
        """The incident keys committed so far (None while the database cannot be reached)."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=2)
            rows = await self._conn.fetch("SELECT DISTINCT incident_key FROM incidents", timeout=5)
        except Exception:  # any failure (an outage, a connection left mid-query
            # by a timeout: asyncpg's InternalClientError) means "not now": reconnect next time
            await self.close()
            return None
        return {r[0] for r in rows}

    async def occurrences(self) -> int:
        progress = await self.progress()
        return -1 if progress is None else progress[1]

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None


async def settle(database: Database, expected: Expected, *, timeout: float = 120.0) -> bool:
    """Wait until every expected incident and occurrence is committed and the outbox is empty.
    False after `timeout`: the comparison then says precisely what is missing."""
    target = (len(expected.incidents), expected.occurrences, 0, len(expected.commands))

    async def done() -> bool:
        return await database.progress_with_commands() == target

    try:
        await eventually(done, timeout=timeout, interval=0.2, what="the expected end state")
    except AssertionError:
        return False
    return True


async def wait_for_occurrences(database: Database, count: int, timeout: float = 90.0) -> None:
    async def reached() -> bool:
        return await database.occurrences() >= count

    await eventually(reached, timeout=timeout, interval=0.05, what=f"{count} occurrences committed")


# --- the faults ---------------------------------------------------------------------------------


async def sigkill_and_restart(
    fleet: Fleet, victim: WorkerProcess, rng: random.Random, *, max_delay: float = 0.3
) -> WorkerProcess:
    """SIGKILL `victim` after a seeded random delay (the kill instant), start a replacement."""
    await asyncio.sleep(rng.uniform(0, max_delay))
    fleet.kill(victim)
    return await fleet.start()


@contextlib.asynccontextmanager
async def batch_held_in_its_transaction(
    database_url: str, *, then: Callable[[], None] = lambda: None, timeout: float = 60.0
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.transaction.Transaction]]:
    """Hold a worker's batch inside its transaction: lock `incident_evidence`, run `then` (e.g.
    release a feeder's held-back records, so that a batch comes), and wait until a backend waits
    on the lock (a batch was read and its transaction is open). Yields the lock's connection and
    transaction: commit it to let the batch go on; otherwise it is rolled back on exit (it wrote
    nothing).

    Only for a fleet of one worker: with two, the blocked backend may belong to the other one."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE incident_evidence IN ACCESS EXCLUSIVE MODE")
        then()
        await eventually(
            lambda: someone_waits_on_a_lock(conn),
            timeout=timeout,
            what="a batch blocked in its transaction",
        )
        yield conn, transaction
    finally:
        await conn.close()


async def sigkill_inside_a_transaction(
    fleet: Fleet,
    victim: WorkerProcess,
    database_url: str,
    *,
    then: Callable[[], None] = lambda: None,
    timeout: float = 60.0,
) -> WorkerProcess:
    """SIGKILL `victim` while one of its batches is inside its database transaction (see
    `batch_held_in_its_transaction`), then start a replacement. A worker that committed offsets
    before its transaction committed loses that batch here."""
    async with batch_held_in_its_transaction(database_url, then=then, timeout=timeout):
        fleet.kill(victim)
    return await fleet.start()


async def postgres_outage(
    postgres: EmbeddedPostgres, watched: WorkerProcess, feeder: Feeder | None, *, records: int = 150
) -> None:
    """Stop PostgreSQL until `watched` reports not ready and the stream went on for `records`
    more records (or up to its held-back tail), then start it again on the same data."""
    postgres.stop_server()
    try:
        await eventually(
            _not_ready(watched), timeout=30, what="readiness to drop without PostgreSQL"
        )
        liveness = await asyncio.to_thread(http_status, watched.http_port, "/healthz")
        assert liveness == 200, f"liveness {liveness} during the outage: it would be restarted"
        if feeder is not None:
            mark = feeder.sent
            await eventually(
                lambda: feeder.sent >= mark + records or feeder.head_done.is_set(),
                timeout=60,
                what="records produced during the outage",
            )
    finally:
        postgres.resume_server()
    await eventually(_ready(watched), timeout=60, what="readiness back after PostgreSQL returned")


async def broker_pause(kafka: EmbeddedKafka, watched: WorkerProcess) -> None:
    """SIGSTOP the broker until `watched` reports not ready, then SIGCONT it."""
    kafka.pause()
    try:
        await eventually(
            _not_ready(watched), timeout=30, what="readiness to drop with the broker paused"
        )
    finally:
        kafka.resume()
    await eventually(_ready(watched), timeout=60, what="readiness back after the broker resumed")


async def sigkill_while_publishing(
    fleet: Fleet,
    victim: WorkerProcess,
    kafka: EmbeddedKafka,
    database_url: str,
    *,
    then: Callable[[], None] = lambda: None,
) -> WorkerProcess:
    """SIGKILL `victim` after it committed events that the broker could not acknowledge.

    A batch is held inside its transaction (`batch_held_in_its_transaction`); the broker is
    paused (SIGSTOP); the batch is let go, so it commits its events while no publish can be
    acknowledged; once the worker reports not ready, it is killed, the broker resumes and a
    replacement starts. A publisher that forgets events before the broker acknowledged them
    loses them here. Only for a fleet of one worker."""
    count_events = "SELECT count(*) FROM incident_events"
    async with batch_held_in_its_transaction(database_url, then=then) as (conn, held):
        before = await conn.fetchval(count_events)
        kafka.pause()
        try:
            await held.commit()

            async def committed() -> bool:
                return bool(await conn.fetchval(count_events) > before)

            await eventually(committed, timeout=30, what="the held batch to commit its events")
            await eventually(
                _not_ready(victim), timeout=30, what="readiness to drop with the broker paused"
            )
            fleet.kill(victim)
        finally:
            kafka.resume()
    return await fleet.start()


async def rebalance_then_sigkill(
    fleet: Fleet, victim: WorkerProcess, rng: random.Random, *, max_delay: float = 0.3
) -> WorkerProcess:
    """A second worker joins (the group rebalances under load), then, after a seeded random
    delay, the first is SIGKILLed: the newcomer must take over all its partitions."""
    newcomer = await fleet.start()
    await asyncio.sleep(rng.uniform(0, max_delay))
    fleet.kill(victim)
    return newcomer


def _ready(worker: WorkerProcess) -> Callable[[], Any]:
    return lambda: is_ready(worker)


def _not_ready(worker: WorkerProcess) -> Callable[[], Any]:
    async def check() -> bool:
        return not await is_ready(worker)

    return check


# --- make soak ----------------------------------------------------------------------------------


def endless_stream(seed: int, chunk: int) -> Iterator[Record]:
    """Chunks of `signal_stream`, each with its own incident keys."""
    for number in range(1, 1_000_000):
        yield from signal_stream(seed * 1000 + number, chunk, prefix=number)


@dataclass
class RssSamples:
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, pid: int) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            self.samples.append((time.monotonic(), psutil.Process(pid).memory_info().rss))

    def summary(self, warm_up: float) -> dict[str, float]:
        first = self.samples[0][0]
        warm = [rss for t, rss in self.samples if t - first >= warm_up] or [self.samples[-1][1]]
        start, end = warm[0], self.samples[-1][1]
        return {
            "first_mib": self.samples[0][1] / 2**20,
            "start_mib": start / 2**20,
            "end_mib": end / 2**20,
            "max_mib": max(rss for _, rss in self.samples) / 2**20,
            "growth_percent": 100.0 * (end - start) / start,
        }


def soak_settings(postgres: EmbeddedPostgres, kafka: EmbeddedKafka, database: str) -> Settings:
    suffix = database.rpartition("_")[2]
    return Settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        database_url=postgres.url.rpartition("/")[0] + f"/{database}",
        group_id=f"soak-{suffix}",
        **{f"topic_{family}": f"signals.{family}.{suffix}" for family in FAMILIES},
        topic_dead_letter=f"signals.dlq.{suffix}",
        topic_incident_events=f"incident.events.{suffix}",
        topic_commands=f"incident.commands.{suffix}",
        topic_command_results=f"incident.command-results.{suffix}",
        **SCENARIO_SETTINGS,
    )


async def soak(args: argparse.Namespace) -> int:
    work = Path(args.log_dir or tempfile.mkdtemp(prefix="ingest-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.duration:.0f}s at {args.rate:.0f} signals/s, seed {args.seed}, logs {work}")
    postgres = EmbeddedPostgres(fsync=False).start()
    kafka = EmbeddedKafka().start()
    try:
        name = f"soak_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(postgres.url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        fleet = Fleet(soak_settings(postgres, kafka, name), work)
        try:
            return await _run(args, fleet, postgres, kafka)
        finally:
            fleet.close()
    finally:
        kafka.stop()
        postgres.stop()


async def _run(
    args: argparse.Namespace, fleet: Fleet, postgres: EmbeddedPostgres, kafka: EmbeddedKafka
) -> int:
    rng = random.Random(args.seed)
    settings = fleet.settings
    expected = Expected()

    def account(record: Record) -> None:
        if record.payload is not None:
            expected.add_signal(record.family, record.payload)
        elif record.reason is not None:
            expected.dead_letters[record.value] = record.reason

    long_lived = await fleet.start()
    victim = await fleet.start()
    assert long_lived.proc is not None
    rss = RssSamples()
    faults: Counter[str] = Counter()
    rotation = ["sigkill", "postgres_outage", "broker_pause", "rebalance", "sigterm"]
    stream = endless_stream(args.seed, max(200, int(args.rate * 10)))
    started = time.monotonic()
    async with Feeder(settings, stream, rate=args.rate, on_sent=account) as feeder:
        sampler = asyncio.create_task(_sample(rss, long_lived.proc.pid, args.sample_seconds))
        try:
            while (left := args.duration - (time.monotonic() - started)) > args.fault_every:
                await asyncio.sleep(args.fault_every)
                kind = rotation[sum(faults.values()) % len(rotation)]
                victim = await _fault(kind, fleet, victim, long_lived, postgres, kafka, feeder, rng)
                faults[kind] += 1
                print(
                    f"  {time.monotonic() - started:6.0f}s  {kind:16} sent {feeder.sent:>8}  "
                    f"worker rss {rss.samples[-1][1] / 2**20:7.1f} MiB",
                    flush=True,
                )
            await asyncio.sleep(max(0.0, left))
            feeder.stop()
            await feeder.finished()  # what was sent is acknowledged, and counted as expected
        finally:
            sampler.cancel()
    database = Database(settings.database_url.get_secret_value())
    settled = await settle(database, expected, timeout=max(120.0, args.duration / 2))
    await database.close()
    codes = await fleet.stop_all()
    verdict = compare(expected, await observe(settings))
    summary = rss.summary(args.warm_up)
    report = {
        "signals_sent": feeder.sent,
        "faults": dict(faults),
        "settled": settled,
        "graceful_exit_codes": codes,
        "incidents": {"expected": verdict.incidents_expected, "found": verdict.incidents_found},
        "events": {
            "expected": verdict.events_expected,
            "found": verdict.events_found,
            "published": verdict.events_published,
        },
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "worker_rss_mib": {k: round(v, 1) for k, v in summary.items()},
    }
    print(json.dumps(report, indent=2))
    failures = [*verdict.problems[:25]]
    if not settled:
        failures.append("the expected end state was not reached")
    if any(codes):
        failures.append(f"graceful stops exited with {codes}")
    if summary["growth_percent"] > args.max_rss_growth:
        failures.append(
            f"worker RSS grew by {summary['growth_percent']:.1f}% (limit {args.max_rss_growth}%)"
        )
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("soak: FAILED" if failures else "soak: passed")
    return 1 if failures else 0


async def _sample(rss: RssSamples, pid: int, every: float) -> None:
    while True:
        rss.add(pid)
        await asyncio.sleep(every)


async def _fault(
    kind: str,
    fleet: Fleet,
    victim: WorkerProcess,
    long_lived: WorkerProcess,
    postgres: EmbeddedPostgres,
    kafka: EmbeddedKafka,
    feeder: Feeder,
    rng: random.Random,
) -> WorkerProcess:
    """Inject one fault; return the current victim worker."""
    if kind == "sigkill":
        return await sigkill_and_restart(fleet, victim, rng)
    if kind == "postgres_outage":
        await postgres_outage(postgres, long_lived, feeder)
    elif kind == "broker_pause":
        await broker_pause(kafka, long_lived)
    elif kind == "rebalance":
        return await rebalance_then_sigkill(fleet, victim, rng)
    elif kind == "sigterm":
        code, seconds = await fleet.terminate(victim)
        if code != 0 or seconds > fleet.settings.shutdown_grace_seconds:
            raise AssertionError(f"SIGTERM: exit {code} after {seconds:.1f}s")
        return await fleet.start()
    return victim


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # as the Makefile and tests/conftest.py do
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load and faults")
    parser.add_argument("--rate", type=float, default=500.0, help="signals produced per second")
    parser.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warm-up",
        type=float,
        default=60.0,
        help="RSS growth is measured from the first sample after this many seconds",
    )
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=50.0,
        help="fail when the long-lived worker's RSS grew more (percent)",
    )
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument(
        "--log-dir", help="where the worker logs go (default: a temporary directory)"
    )
    return asyncio.run(soak(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
