"""HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus).

A bare ASGI application served by uvicorn inside the worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_worker.metrics import Metrics

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class HealthState:
    """What the probes report. Updated by the worker's components as things happen."""

    consumer_alive: Callable[[], bool] = lambda: False
    partitions_assigned: Callable[[], bool] = lambda: False
    database_ok: bool = False
    broker_ok: bool = False
    faults: set[str] = field(default_factory=set)
    batch_started_at: float | None = None
    max_batch_seconds: float = 300.0

    def set_fault(self, component: str, active: bool) -> None:
        (self.faults.add if active else self.faults.discard)(component)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        stuck = (
            self.batch_started_at is not None
            and time.monotonic() - self.batch_started_at > self.max_batch_seconds
        )
        alive = self.consumer_alive() and not stuck
        return alive, {"consume_loop": "alive" if alive else "dead", "batch_stuck": stuck}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "database": self.database_ok,
            "broker": self.broker_ok,
            "partitions_assigned": self.partitions_assigned(),
            "no_active_faults": not self.faults,
        }
        return all(checks.values()), {**checks, "faults": sorted(self.faults)}


class HealthApp:
    """The ASGI application."""

    def __init__(self, state: HealthState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/healthz":
            ok, detail = self.state.liveness()
            await _respond(
                send, 200 if ok else 503, json.dumps(detail).encode(), "application/json"
            )
        elif path == "/readyz":
            ok, detail = self.state.readiness()
            await _respond(
                send, 200 if ok else 503, json.dumps(detail).encode(), "application/json"
            )
        elif path == "/metrics":
            self.metrics.ready.set(1 if self.state.readiness()[0] else 0)
            await _respond(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            await _respond(send, 404, b'{"error":"not found"}', "application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGTERM/SIGINT and shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """uvicorn serving `HealthApp`; `port` is the bound port once started (useful with port 0)."""

    def __init__(self, app: HealthApp, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
