"""Gateway phase of the benchmark: Alertmanager groups over HTTP against the same records
straight to Kafka, at increasing offered rates, in one run (issue 13).

    python -m bench.gateway [--rates 50,200,500] [--duration 10]

Starts `ingest-worker dev` (embedded PostgreSQL and broker, worker, gateway) on ports of its
own, then for each rate posts unique two-alert notifications to `/v1/signals/alertmanager` and
produces the same kind of records to `signals.alertmanager` with the producer the gateway uses,
and reports requests/s, p50/p99 latency to the 202 (or the broker ack) and to the first
`incident.created` of the notification's alerts. Writes bench/results/gateway.{md,json}.
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

RESULTS = Path(__file__).resolve().parent / "results"
PORTS = {"kafka": 29092, "postgres": 25432, "http": 28080, "gateway": 28081}


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


async def phase(
    mode: str, rate: float, duration: float, client: httpx.AsyncClient, producer: AIOKafkaProducer,
    bootstrap: str,
) -> dict[str, Any]:  # fmt: skip
    run = f"{mode}-{rate}-{time.time_ns()}"
    total = int(rate * duration)
    acked: list[float] = []
    sent_at: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_events(bootstrap, sent_at, seen, stop))
    await asyncio.sleep(1.0)  # the watcher sits at the end of the topic
    errors = 0

    async def one(n: int) -> None:
        nonlocal errors
        body = notification(n, run)
        keys = [f"alertmanager:{a['fingerprint']}" for a in body["alerts"]]
        start = time.monotonic()
        for key in keys:
            sent_at[key] = start
        if mode == "gateway":
            try:
                response = await client.post("/v1/signals/alertmanager", json=body)
            except httpx.HTTPError:  # a timeout at overload: counted, not fatal
                errors += 1
                return
            if response.status_code != 202:
                errors += 1
                return
        else:
            await producer.send_and_wait(
                "signals.alertmanager",
                json.dumps(body).encode(),
                key=",".join(sorted(keys)).encode(),
            )
        acked.append(time.monotonic() - start)

    began = time.monotonic()
    tasks = []
    for n in range(total):
        due = began + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + 30
    while len(seen) < len(sent_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await watcher
    to_event = [seen[k] - sent_at[k] for k in seen]
    return {
        "mode": mode, "offered_per_s": rate, "requests": total, "errors": errors,
        "achieved_per_s": round(len(acked) / elapsed, 1),
        "ack_p50_ms": round(pct(acked, 0.5) * 1000, 1), "ack_p99_ms": round(pct(acked, 0.99) * 1000, 1),
        "event_p50_ms": round(pct(to_event, 0.5) * 1000, 1), "event_p99_ms": round(pct(to_event, 0.99) * 1000, 1),
        "events_seen": len(seen), "alerts_sent": len(sent_at),
    }  # fmt: skip


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    bootstrap = f"127.0.0.1:{PORTS['kafka']}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    results = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{PORTS['gateway']}", timeout=30
        ) as client:
            for rate in args.rates:
                for mode in ("kafka", "gateway"):
                    results.append(
                        await phase(mode, rate, args.duration, client, producer, bootstrap)
                    )
                    print(json.dumps(results[-1]), flush=True)
    finally:
        await producer.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    p.add_argument("--rates", default="50,200,500", type=lambda s: [float(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    env = {
        **os.environ,
        "INGEST_DEV_KAFKA_PORT": str(PORTS["kafka"]), "INGEST_DEV_POSTGRES_PORT": str(PORTS["postgres"]),
        "INGEST_HTTP_PORT": str(PORTS["http"]), "INGEST_GATEWAY_PORT": str(PORTS["gateway"]),
        "INGEST_GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "INGEST_GATEWAY_RATE_LIMIT_BURST": "100000",
        "INGEST_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    exe = str(Path(sys.executable).with_name("ingest-worker"))
    dev = subprocess.Popen(
        [exe, "dev"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{PORTS['gateway']}/readyz", timeout=2).status_code == 200 and \
                        httpx.get(f"http://127.0.0.1:{PORTS['http']}/readyz", timeout=2).status_code == 200:  # fmt: skip
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or dev.poll() is not None:
                raise SystemExit("ingest-worker dev did not become ready")
            time.sleep(0.5)
        results = asyncio.run(main_async(args))
    finally:
        dev.terminate()
        dev.wait(60)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gateway.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Gateway vs Kafka: Alertmanager notifications (2 alerts each)", "",
        "| offered/s | path | achieved/s | errors | p50 to ack ms | p99 to ack ms | p50 to incident event ms | p99 to incident event ms | events seen / alerts |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in results:
        lines.append(
            f"| {r['offered_per_s']:.0f} | {r['mode']} | {r['achieved_per_s']} | {r['errors']} | {r['ack_p50_ms']} | "
            f"{r['ack_p99_ms']} | {r['event_p50_ms']} | {r['event_p99_ms']} | {r['events_seen']}/{r['alerts_sent']} |"
        )  # fmt: skip
    (RESULTS / "gateway.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
