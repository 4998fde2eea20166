"""Benchmark infrastructure: topics, producing, databases, the worker process, measurements."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ingest_worker.service.config import Settings, topic_field
from ingest_worker.service.embedded import EmbeddedServices, free_port
from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.registry import SOURCES

from .generate import GenRecord

PARTITIONS = 3
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------ topics
@dataclass(frozen=True)
class Topics:
    """The topic names of one phase (every phase has its own, so phases never see each other).

    Derived from the source registry (`SOURCES`, each source's default topic and its
    `INGEST_TOPIC_<SETTING>` variable) plus the commands topic, so that a new source needs no
    line here; `worker_env` is checked against `Settings.source_topics`."""

    prefix: str

    @property
    def by_kind(self) -> dict[str, str]:
        """Source name (and `commands`) → topic."""
        topics = {s.name: f"{self.prefix}.{s.topic}" for s in SOURCES}
        topics[COMMANDS.name] = f"{self.prefix}.{COMMANDS.topic}"
        return topics

    @property
    def kind_of(self) -> dict[str, str]:
        return {topic: kind for kind, topic in self.by_kind.items()}

    @property
    def signals(self) -> list[str]:
        """Every topic the worker consumes (the source topics and the commands topic)."""
        return list(self.by_kind.values())

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.signals.dlq"

    @property
    def events(self) -> str:
        return f"{self.prefix}.incident.events"

    @property
    def command_results(self) -> str:
        return f"{self.prefix}.incident.command-results"

    def all(self) -> list[str]:
        return [*self.signals, self.dead_letter, self.events, self.command_results]

    def signal_partitions(self, kinds: Iterable[str] | None = None) -> list[TopicPartition]:
        by_kind = self.by_kind
        names = self.signals if kinds is None else [by_kind[k] for k in kinds]
        return [TopicPartition(t, p) for t in names for p in range(PARTITIONS)]

    def event_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.events, p) for p in range(PARTITIONS)]

    def dead_letter_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.dead_letter, p) for p in range(PARTITIONS)]

    def result_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.command_results, p) for p in range(PARTITIONS)]

    def worker_env(self) -> dict[str, str]:
        by_kind = self.by_kind
        env = {f"INGEST_{topic_field(s).upper()}": by_kind[s.name] for s in SOURCES}
        env.update(
            {
                "INGEST_TOPIC_COMMANDS": by_kind[COMMANDS.name],
                "INGEST_TOPIC_COMMAND_RESULTS": self.command_results,
                "INGEST_TOPIC_DEAD_LETTER": self.dead_letter,
                "INGEST_TOPIC_INCIDENT_EVENTS": self.events,
            }
        )
        return env

    def check_worker_env(self) -> None:
        """The worker, reading `worker_env()`, consumes exactly these topics (Settings says)."""
        saved = {k: v for k, v in os.environ.items() if k.startswith("INGEST_")}
        try:
            for k in saved:
                del os.environ[k]
            os.environ.update(self.worker_env())
            settings = Settings()
        finally:
            for k in [k for k in os.environ if k.startswith("INGEST_")]:
                del os.environ[k]
            os.environ.update(saved)
        seen = {t: s.name for t, s in settings.source_topics().items()}
        seen[settings.topic_commands] = COMMANDS.name
        expected = self.kind_of
        if seen != expected or settings.topic_command_results != self.command_results:
            raise RuntimeError(f"worker topics {seen} != bench topics {expected}")
        for source in SOURCES:
            assert settings.topic_of(source) == self.by_kind[source.name]


async def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, PARTITIONS, 1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def make_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "bench-producer",
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 512 * 1024,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def produce_all(bootstrap: str, topics: Topics, records: Sequence[GenRecord]) -> float:
    """Produce every record as fast as possible (acknowledged); return the records/s achieved."""
    producer = make_producer(bootstrap)
    await producer.start()
    by_kind = topics.by_kind
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for record in records:
            pending.append(
                await producer.send(by_kind[record.kind], value=record.value, key=record.key)
            )
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def count_records(
    bootstrap: str,
    partitions: Sequence[TopicPartition],
    expected: int | None = None,
    idle_seconds: float = 3.0,
) -> int:
    """Read `partitions` from the beginning and count the records (stops when idle for a while).

    Tansu's ListOffsets answers are not usable as end offsets, so we read instead.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-counter"
    )
    await consumer.start()
    try:
        consumer.assign(list(partitions))
        await consumer.seek_to_beginning(*partitions)
        count = 0
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_seconds:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = sum(len(v) for v in batch.values())
            if got:
                count += got
                idle_since = time.monotonic()
                if expected is not None and count >= expected:
                    # Keep reading briefly: more than expected would be a finding.
                    idle_seconds = min(idle_seconds, 0.5)
        return count
    finally:
        await consumer.stop()


class CommitObserver:
    """Reads the committed offsets of a consumer group without joining it."""

    def __init__(self, bootstrap: str, group: str, partitions: Sequence[TopicPartition]) -> None:
        self._partitions = list(partitions)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            client_id="bench-observer",
        )

    async def __aenter__(self) -> CommitObserver:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def committed(self) -> int:
        return sum((await self.committed_by_topic()).values())

    async def committed_by_topic(self) -> dict[str, int]:
        by_topic: dict[str, int] = {}
        for tp in self._partitions:
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + (
                await self._consumer.committed(tp) or 0
            )
        return by_topic


# ------------------------------------------------------------ database
def database_url(admin_url: str, name: str) -> str:
    return f"{admin_url.rpartition('/')[0]}/{name}"


async def quiesce_postgres(admin_url: str, *, timeout: float = 120.0) -> float:
    """Start the next phase on a quiet PostgreSQL: drop the earlier phases' databases (their
    autovacuum would otherwise run during the next measurement), CHECKPOINT, and wait until no
    autovacuum worker runs. Returns the seconds it took."""
    started = time.monotonic()
    conn = await asyncpg.connect(admin_url)
    try:
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await conn.execute("CHECKPOINT")
        while time.monotonic() - started < timeout:
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            )
            if not busy:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return time.monotonic() - started


async def fresh_database(admin_url: str, name: str) -> str:
    """An empty database `name` (dropped first if it exists); the worker migrates it itself."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(admin_url, name)


async def table_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        counts = {}
        for table in (
            "incidents",
            "incident_events",
            "incident_evidence",
            "processed_signals",
            "outbox",
            "recoveries",
            "command_receipts",
            "command_results_outbox",
        ):
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        return counts
    finally:
        await conn.close()


# ------------------------------------------------------------ CPU, RSS
def _cpu(proc: psutil.Process, *, children_done: bool = False) -> float:
    with contextlib.suppress(psutil.Error):
        t = proc.cpu_times()
        total = t.user + t.system
        if children_done:
            total += t.children_user + t.children_system
        return total
    return 0.0


@dataclass
class CpuSnapshot:
    at: float
    worker: float
    postgres: float
    broker: float
    bench: float
    system_busy: float


class CpuMeter:
    """CPU seconds of the worker, PostgreSQL (postmaster + backends), the broker, this process,
    and the whole machine (the difference is other people's work: the noise of the run)."""

    def __init__(self, services: EmbeddedServices, worker_pid: int | Sequence[int] | None) -> None:
        pids = [worker_pid] if isinstance(worker_pid, int) else list(worker_pid or ())
        self._workers = [psutil.Process(pid) for pid in pids]
        self._pg = psutil.Process(services.postgres.pid) if services.postgres.pid else None
        self._broker = psutil.Process(services.kafka.pid) if services.kafka.pid else None
        self._self = psutil.Process()

    def snapshot(self) -> CpuSnapshot:
        pg = 0.0
        if self._pg is not None:
            pg = _cpu(self._pg, children_done=True)
            with contextlib.suppress(psutil.Error):
                for child in self._pg.children(recursive=True):
                    pg += _cpu(child)
        sys_t = psutil.cpu_times()
        busy = sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0)
        busy -= getattr(sys_t, "guest", 0.0) + getattr(sys_t, "guest_nice", 0.0)
        return CpuSnapshot(
            at=time.monotonic(),
            worker=sum(_cpu(w) for w in self._workers),
            postgres=pg,
            broker=_cpu(self._broker) if self._broker else 0.0,
            bench=_cpu(self._self),
            system_busy=busy,
        )

    @staticmethod
    def delta(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
        d = {
            "wall_seconds": b.at - a.at,
            "worker": b.worker - a.worker,
            "postgres": b.postgres - a.postgres,
            "broker": b.broker - a.broker,
            "bench_process": b.bench - a.bench,
            "machine_busy": b.system_busy - a.system_busy,
        }
        d["others"] = max(
            0.0, d["machine_busy"] - d["worker"] - d["postgres"] - d["broker"] - d["bench_process"]
        )
        return {k: round(v, 3) for k, v in d.items()}


def peak_rss(pid: int) -> int | None:
    """VmHWM: the kernel's high-water mark of the resident set, in bytes."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(match[1]) * 1024 if match else None


# ------------------------------------------------------------ worker
async def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET (no thread, no dependency): (status, body), (0, b"") on error."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return 0, b""
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError):
        return 0, b""
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return 0, b""


async def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 120.0) -> None:
    """Wait until the process `proc` answers 200 on `port`'s /readyz; exit if it dies first or
    does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (await http_get(port, "/readyz"))[0] != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{proc.args} did not become ready")
        await asyncio.sleep(0.5)


_HISTOGRAMS = frozenset(
    {
        "ingest_batch_records_sum",
        "ingest_batch_records_count",
        "ingest_batch_duration_seconds_sum",
        "ingest_batch_duration_seconds_count",
    }
)
_SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN)$")


def parse_metrics(text: str) -> dict[str, Any]:
    """The worker's counters we watch: signals by outcome, events published, outbox backlog."""
    outcomes: dict[str, float] = {}
    by_topic: dict[str, dict[str, float]] = {}
    commands: dict[str, float] = {}
    published = 0.0
    backlog = 0.0
    errors: dict[str, float] = {}
    histograms: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match[1], match[2] or "", float(match[3])
        if name == "ingest_signals_total":
            outcome = re.search(r'outcome="([^"]*)"', labels)
            topic = re.search(r'topic="([^"]*)"', labels)
            key = outcome[1] if outcome else "?"
            outcomes[key] = outcomes.get(key, 0.0) + value
            per = by_topic.setdefault(topic[1] if topic else "?", {})
            per[key] = per.get(key, 0.0) + value
        elif name == "ingest_commands_total":
            verb = re.search(r'type="([^"]*)"', labels)
            outcome = re.search(r'outcome="([^"]*)"', labels)
            key = f"{verb[1] if verb else '?'}:{outcome[1] if outcome else '?'}"
            commands[key] = commands.get(key, 0.0) + value
        elif name == "ingest_events_published_total":
            published += value
        elif name == "ingest_outbox_backlog":
            backlog = value
        elif name == "ingest_errors_total" and value:
            errors[labels] = value
        elif name in _HISTOGRAMS:
            histograms[name] = histograms.get(name, 0.0) + value
    return {
        "signals": int(sum(outcomes.values())),
        "outcomes": {k: int(v) for k, v in sorted(outcomes.items())},
        "outcomes_by_topic": {
            t: {k: int(v) for k, v in sorted(o.items())} for t, o in sorted(by_topic.items())
        },
        "commands_and_transitions": {k: int(v) for k, v in sorted(commands.items())},
        "events_published": int(published),
        "outbox_backlog": int(backlog),
        "errors": errors,
        "batches": int(histograms.get("ingest_batch_records_count", 0)),
        "mean_batch_records": round(
            histograms.get("ingest_batch_records_sum", 0.0)
            / max(1.0, histograms.get("ingest_batch_records_count", 0.0)),
            1,
        ),
        "mean_batch_seconds": round(
            histograms.get("ingest_batch_duration_seconds_sum", 0.0)
            / max(1.0, histograms.get("ingest_batch_duration_seconds_count", 0.0)),
            4,
        ),
    }


@dataclass
class WorkerProc:
    """One `ingest-worker run` (or a profiled equivalent) in its own process, configured by env."""

    env: dict[str, str]
    log_path: Path
    command: list[str] | None = None
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def environment(
        *, bootstrap: str, database_url: str, group: str, topics: Topics, overrides: dict[str, str]
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        env.update(
            {
                "INGEST_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "INGEST_DATABASE_URL": database_url,
                "INGEST_GROUP_ID": group,
                "INGEST_CLIENT_ID": group,
                "INGEST_HTTP_HOST": "127.0.0.1",
                "INGEST_LOG_LEVEL": "WARNING",
                "INGEST_LOG_FORMAT": "json",
                **topics.worker_env(),
                **overrides,
            }
        )
        return env

    def start(self) -> WorkerProc:
        command = self.command or [str(Path(sys.executable).with_name("ingest-worker")), "run"]
        env = {**self.env, "INGEST_HTTP_PORT": str(self.http_port)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_ready(self, timeout: float = 90.0) -> float:
        """Poll /readyz every 20 ms; return the monotonic time it first answered 200."""
        deadline = time.monotonic() + timeout
        while True:
            status, _ = await http_get(self.http_port, "/readyz", timeout=1.0)
            if status == 200:
                return time.monotonic()
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready after {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.02)

    async def metrics(self) -> dict[str, Any] | None:
        status, body = await http_get(self.http_port, "/metrics")
        return parse_metrics(body.decode(errors="replace")) if status == 200 else None

    async def stop(self, timeout: float = 40.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(10)
                break
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def warnings(self) -> dict[str, int]:
        """Count of the worker's log lines by event name (WARNING and above at the bench level)."""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                match = re.search(r'"event": ?"([^"]+)"', line)
                name = match[1] if match else line[:60]
                counts[name] = counts.get(name, 0) + 1
        return counts


class RssSampler:
    """Samples the worker's RSS every `interval` seconds in the background."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self._proc.memory_info().rss))
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def rss_summary(
    samples: Sequence[tuple[float, int]], start: float, end: float, warmup_fraction: float = 0.2
) -> dict[str, Any]:
    """RSS over [start, end]; flatness is judged after a warm-up (the first 20% of the window).

    `flat` is true when every post-warm-up sample is within ±10% of their median.
    """
    window = [(t, r) for t, r in samples if start <= t <= end]
    if not window:
        return {"samples": 0}
    cut = start + (end - start) * warmup_fraction
    steady = [r for t, r in window if t >= cut] or [r for _, r in window]
    steady_sorted = sorted(steady)
    median = steady_sorted[len(steady_sorted) // 2]
    low, high = steady_sorted[0], steady_sorted[-1]
    deviation = max(high - median, median - low) / median
    mib = 1024 * 1024
    return {
        "samples": len(window),
        "first_mib": round(window[0][1] / mib, 1),
        "max_mib": round(max(r for _, r in window) / mib, 1),
        "steady_median_mib": round(median / mib, 1),
        "steady_min_mib": round(low / mib, 1),
        "steady_max_mib": round(high / mib, 1),
        "steady_max_deviation": round(deviation, 4),
        "flat": deviation <= 0.10,
        "series": [(round(t - start, 2), round(r / mib, 1)) for t, r in window],
    }
