"""Notification phase of the benchmark: latency from an incident event's publication on the events
topic to its delivery to one HTTP subscription, at an offered signal rate.

    python -m bench.notify [--rate 1000] [--duration 10]

Starts `ingest-worker dev` (embedded PostgreSQL and broker, worker) on ports of its own and
`ingest-worker notify` beside it with one `generic` subscription, signed, pointing at a receiver
in this process that answers 200.
Produces unique RED deploy-status signals at `--rate` per second (each opens an incident: one
`incident.created` event), watches the events topic for each event's publication time (the
record's broker timestamp) and reports p50 / p99 of delivery time minus publication time.
Writes bench/results/notify.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import wait_ready

RESULTS = Path(__file__).resolve().parent / "results"
PORTS = {"kafka": 19092, "postgres": 15432, "http": 18080, "gateway": 18081, "notify": 18082}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def signal(n: int, run: str) -> bytes:
    document = {
        "env": "prod", "status": "RED", "changedAt": "2026-12-01T00:00:00Z",
        "deployId": f"bench-{run}-{n}",
        "signals": {"checkedAt": "2026-12-01T00:00:00Z", "health": {"status": "fail", "httpStatus": 503}},
        "reasons": [{"code": "HEALTH_FAIL", "severity": "error", "message": "bench"}],
    }  # fmt: skip
    return json.dumps(document).encode()


class Receiver:
    """A minimal HTTP/1.1 receiver: records the arrival time of every `webhook-id`."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                del line
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.arrived.setdefault(headers.get("webhook-id", ""), time.time())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def watch(bootstrap: str, published: dict[str, float], stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        "incident.events", bootstrap_servers=bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    ce_id = dict(record.headers or ()).get("ce_id", b"").decode()
                    published[ce_id] = record.timestamp / 1000
    finally:
        await consumer.stop()


async def run_phase(receiver: Receiver, rate: float, duration: float) -> dict[str, Any]:
    bootstrap = f"127.0.0.1:{PORTS['kafka']}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    published: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(bootstrap, published, stop))
    await asyncio.sleep(1.0)  # the watcher sits at the end of the topic
    run = str(time.time_ns())
    total = int(rate * duration)
    began = time.monotonic()
    try:
        futures = []
        for n in range(total):
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futures.append(await producer.send("signals.deploy-status", signal(n, run)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        len(published) < total or not set(published) <= set(receiver.arrived)
    ):
        await asyncio.sleep(0.2)
    stop.set()
    await watcher
    latencies = [receiver.arrived[i] - t for i, t in published.items() if i in receiver.arrived]
    return {
        "offered_per_s": rate, "signals": total, "events_published": len(published),
        "delivered": len(latencies),
        "p50_ms": round(pct(latencies, 0.5) * 1000, 1), "p99_ms": round(pct(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
    }  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as folder:
        subs = Path(folder) / "subscriptions.json"
        subs.write_text(json.dumps({"subscriptions": [{
            "id": "bench", "url": f"http://127.0.0.1:{receiver.port}/hook", "format": "generic",
            "secrets": [SECRET],
        }]}))  # fmt: skip
        env = {
            **os.environ,
            "INGEST_DEV_KAFKA_PORT": str(PORTS["kafka"]), "INGEST_DEV_POSTGRES_PORT": str(PORTS["postgres"]),
            "INGEST_HTTP_PORT": str(PORTS["http"]), "INGEST_GATEWAY_PORT": str(PORTS["gateway"]),
            "INGEST_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        exe = str(Path(sys.executable).with_name("ingest-worker"))
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        dev = subprocess.Popen([exe, "dev"], env=env, **quiet)
        # The notifier in its own process, as deployed (beside `dev`'s worker it would share
        # the worker's event loop).
        notify_env = {
            **env, "INGEST_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
            "INGEST_NOTIFY_HTTP_PORT": str(PORTS["notify"]), "INGEST_SUBSCRIPTIONS_FILE": str(subs),
            "INGEST_NOTIFY_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        }  # fmt: skip
        notify: subprocess.Popen[bytes] | None = None
        try:
            await wait_ready(dev, PORTS["http"])
            notify = subprocess.Popen([exe, "notify"], env=notify_env, **quiet)
            await wait_ready(notify, PORTS["notify"])
            return await run_phase(receiver, args.rate, args.duration)
        finally:
            for proc in (notify, dev):
                if proc is not None:
                    proc.terminate()
                    await asyncio.to_thread(proc.wait, 60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    # The machine's load during the run: the notifier is CPU-bound once starved.
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notify.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Notification latency: event published → delivered, one subscription", "",
        "| offered signals/s | signals | events published | delivered | p50 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['offered_per_s']:.0f} | {result['signals']} | {result['events_published']} | "
        f"{result['delivered']} | {result['p50_ms']} | {result['p99_ms']} | {result['max_ms']} |",
        "", f"Load average (1 min) at the end of the run: {result['load_average_1m']} on {result['cpus']} CPUs.",
    ]  # fmt: skip
    (RESULTS / "notify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
