"""Gateway phase of the benchmark: Alertmanager notifications over HTTP against the same records
straight to Kafka, at increasing offered rates, with the worker running beside the gateway.

    python -m bench.gateway [--rates 250,1000,2000] [--duration 8] [--connections 128]
                            [--target gateway|dev] [--label after] [--profile]

Starts `ingest-worker dev` (embedded PostgreSQL and broker, the worker) and, for
`--target gateway` (the default), one `ingest-worker gateway` process of its own with a bearer
token (what a deployment runs); `--target dev` posts to the gateway `ingest-worker dev` serves
inside the worker's process instead. For each rate it posts unique two-alert notifications to
`/v1/signals/alertmanager` from an open-loop generator (`bench.loadgen`: requests due at the
offered rate over `--connections` kept-alive connections, latency from the intended send time),
and produces the same kind of records to `signals.alertmanager` with the producer settings the
gateway uses. It reports requests/s, p50/p99 to the 202 (or the broker ack), to the first
`incident.created` of the notification's alerts, and the gateway process's CPU per request.
`--profile` attaches py-spy (`pip install py-spy`) to the gateway during the last rate.

Results go to bench/results/gateway.json under `--label` (other labels are kept, so a before
and an after run sit side by side), and bench/results/gateway.md is rendered from all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import loadgen
from bench.gateway_report import NOTES_FILE, render, summarize_profile

RESULTS = Path(__file__).resolve().parent / "results"
PORTS = {"kafka": 29092, "postgres": 25432, "http": 28080, "dev_gateway": 28081, "gateway": 28082}
TOKEN = "bench-token"
TICKS = os.sysconf("SC_CLK_TCK")


def notification(n: int, run: str) -> dict[str, Any]:
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "BenchAlert",
                "instance": f"{run}-{n}-{i}",
                "severity": "critical",
            },
            "annotations": {"summary": f"bench alert {n}/{i}"},
            "startsAt": "2026-12-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": f"{abs(hash((run, n, i))) % (1 << 64):016x}",
        }
        for i in range(2)
    ]
    return {
        "version": "4", "groupKey": f"{{}}:{{alertname=\"BenchAlert\",n=\"{n}\"}}",
        "status": "firing", "receiver": "bench", "groupLabels": {"alertname": "BenchAlert"},
        "commonLabels": {"alertname": "BenchAlert"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example", "truncatedAlerts": 0, "alerts": alerts,
    }  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS


def sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the process's threads."""
    on = wait = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        ran, waited = Path(task, "schedstat").read_text().split()[:2]
        on, wait = on + int(ran) / 1e9, wait + int(waited) / 1e9
    return on, wait


async def watch_events(bootstrap: str, sent: dict[str, float], seen: dict[str, float], stop: asyncio.Event) -> None:  # fmt: skip
    consumer = AIOKafkaConsumer(
        "incident.events", bootstrap_servers=bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    subject = dict(record.headers or ()).get("ce_subject", b"").decode()
                    if subject in sent and subject not in seen:
                        seen[subject] = now
    finally:
        await consumer.stop()


async def _to_kafka(producer: AIOKafkaProducer, bodies: list[tuple[bytes, bytes]], rate: float, on_sent: Any) -> loadgen.Outcome:  # fmt: skip
    outcome = loadgen.Outcome()

    async def one(n: int, due: float) -> None:
        value, key = bodies[n]
        await producer.send_and_wait("signals.alertmanager", value, key=key)
        outcome.latencies.append(time.monotonic() - due)

    began, tasks = time.monotonic(), []
    for n in range(len(bodies)):
        due = began + n / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        on_sent(n, due)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    outcome.elapsed = time.monotonic() - began
    return outcome


async def phase(mode: str, rate: float, args: argparse.Namespace, producer: AIOKafkaProducer, pid: int | None) -> dict[str, Any]:  # fmt: skip
    run = f"{mode}-{rate}-{time.time_ns()}"
    total = int(rate * args.duration)
    bodies = [notification(n, run) for n in range(total)]
    keys = [[f"alertmanager:{a['fingerprint']}" for a in b["alerts"]] for b in bodies]
    encoded = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    sent_at: dict[str, float] = {}
    seen: dict[str, float] = {}

    def on_sent(n: int, due: float) -> None:
        for key in keys[n]:
            sent_at[key] = due

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_events(f"127.0.0.1:{PORTS['kafka']}", sent_at, seen, stop))
    await asyncio.sleep(1.0)  # the watcher sits at the end of the topic
    cpu_before = cpu_seconds(pid) if pid else 0.0
    sched_before, wall_before = sched(pid), time.monotonic()
    if mode == "kafka":
        pairs = [(v, ",".join(sorted(k)).encode()) for v, k in zip(encoded, keys, strict=True)]
        outcome = await _to_kafka(producer, pairs, rate, on_sent)
    else:
        port = PORTS["gateway"] if args.target == "gateway" else PORTS["dev_gateway"]
        auth = [("Authorization", f"Bearer {TOKEN}")] if args.target == "gateway" else []
        requests = [
            loadgen.request_bytes("/v1/signals/alertmanager", "bench", body, auth)
            for body in encoded
        ]
        outcome = await loadgen.run(
            "127.0.0.1", port, requests, rate=rate, connections=args.connections, on_sent=on_sent
        )
    cpu = (cpu_seconds(pid) - cpu_before) if pid else 0.0
    (on, wait), wall = sched(pid), time.monotonic() - wall_before
    on, wait = on - sched_before[0], wait - sched_before[1]
    deadline = time.monotonic() + 15
    while len(seen) < len(sent_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await watcher
    to_event = [seen[k] - sent_at[k] for k in seen]
    acked = outcome.latencies
    return {
        "mode": mode, "offered_per_s": rate, "requests": total, "errors": outcome.errors,
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
        "achieved_per_s": round(len(acked) / outcome.elapsed, 1),
        "ack_p50_ms": round(pct(acked, 0.5) * 1000, 1), "ack_p99_ms": round(pct(acked, 0.99) * 1000, 1),
        "ack_max_ms": round(max(acked, default=float("nan")) * 1000, 1),
        "event_p50_ms": round(pct(to_event, 0.5) * 1000, 1), "event_p99_ms": round(pct(to_event, 0.99) * 1000, 1),
        "events_seen": len(seen), "alerts_sent": len(sent_at),
        "gateway_cpu_us_per_request": round(1e6 * cpu / max(1, len(acked)), 1) if mode != "kafka" else None,
        "gateway_cpu_cores": round(cpu / outcome.elapsed, 2) if mode != "kafka" else None,
        "gateway_on_cpu_pct": round(100 * on / wall, 1) if mode != "kafka" else None,
        "gateway_waiting_for_cpu_pct": round(100 * wait / wall, 1) if mode != "kafka" else None,
    }  # fmt: skip


def _py_spy(pid: int, seconds: float, raw: Path, rate: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (profiling only)")
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(int(seconds)),
         "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def main_async(args: argparse.Namespace, pid: int) -> dict[str, Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=f"127.0.0.1:{PORTS['kafka']}", acks="all", linger_ms=2
    )
    await producer.start()
    rows: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    try:
        for i, rate in enumerate(args.rates):
            modes = ("gateway",) if args.no_kafka else ("kafka", "gateway")
            for mode in modes:
                spy = None
                last = i == len(args.rates) - 1
                raw = RESULTS / "tmp-gateway-pyspy.txt"
                if args.profile and last and mode == "gateway":
                    spy = _py_spy(pid, args.duration + 1, raw, 250)
                rows.append(await phase(mode, rate, args, producer, pid))
                print(json.dumps(rows[-1]), flush=True)
                if spy is not None:
                    spy.wait(60)
                    profile = summarize_profile(raw.read_text(encoding="utf-8"), 250, rows[-1])
    finally:
        await producer.stop()
    return {"rows": rows, "profile": profile}


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "INGEST_DEV_KAFKA_PORT": str(PORTS["kafka"]), "INGEST_DEV_POSTGRES_PORT": str(PORTS["postgres"]),
        "INGEST_HTTP_PORT": str(PORTS["http"]), "INGEST_GATEWAY_PORT": str(PORTS["dev_gateway"]),
        "INGEST_GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "INGEST_GATEWAY_RATE_LIMIT_BURST": "100000",
        "INGEST_LOG_LEVEL": "WARNING",
    }  # fmt: skip


def _wait_ready(urls: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if all(httpx.get(u, timeout=2).status_code == 200 for u in urls):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("the services did not become ready")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    p.add_argument("--rates", default="250,1000,2000", type=lambda s: [float(x) for x in s.split(",")])  # fmt: skip
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=128)
    p.add_argument("--target", choices=("gateway", "dev"), default="gateway")
    p.add_argument("--label", default="latest", help="the run's name in gateway.json/md")
    p.add_argument("--no-kafka", action="store_true", help="skip the straight-to-Kafka phases")
    p.add_argument("--profile", action="store_true", help="py-spy on the gateway, last rate")
    args = p.parse_args(argv)
    env = _env()
    exe = str(Path(sys.executable).with_name("ingest-worker"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    dev = subprocess.Popen([exe, "dev"], env=env, **quiet)  # type: ignore[call-overload]
    procs = [dev]
    try:
        _wait_ready([f"http://127.0.0.1:{PORTS['http']}/readyz"], procs)
        pid = dev.pid
        if args.target == "gateway":
            gateway_env = {
                **env, "INGEST_GATEWAY_PORT": str(PORTS["gateway"]),
                "INGEST_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
                "INGEST_GATEWAY_TOKENS": json.dumps({"*": [TOKEN]}),
                "INGEST_GATEWAY_ROUTES": "ingest",
            }  # fmt: skip
            gateway = subprocess.Popen([exe, "gateway"], env=gateway_env, **quiet)  # type: ignore[call-overload]
            procs.append(gateway)
            pid = gateway.pid
        port = PORTS["gateway"] if args.target == "gateway" else PORTS["dev_gateway"]
        _wait_ready([f"http://127.0.0.1:{port}/readyz"], procs)
        outcome = asyncio.run(main_async(args, pid))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(60)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "gateway.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs = runs if isinstance(runs, dict) else {}
    runs[args.label] = {
        "target": args.target, "connections": args.connections, "duration_s": args.duration,
        "load_average": os.getloadavg(), **outcome,
    }  # fmt: skip
    path.write_text(json.dumps(runs, indent=2) + "\n")
    notes = RESULTS / NOTES_FILE
    text = render(runs, notes.read_text(encoding="utf-8") if notes.exists() else "")
    (RESULTS / "gateway.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
