"""Serving the gateway: uvicorn in the caller's event loop, the producer beside it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Mapping, Sequence

import structlog
import uvicorn

from ingest_worker.service import runtime, telemetry
from ingest_worker.service.config import Settings
from ingest_worker.service.gateway.app import create_app
from ingest_worker.service.gateway.connections import guarded_httptools
from ingest_worker.service.gateway.credentials import CredentialStore
from ingest_worker.service.gateway.forwarder import Forwarder
from ingest_worker.service.gateway.metrics import GatewayMetrics
from ingest_worker.service.gateway.read_backend import attach_backend
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import SOURCES
from ingest_worker.sources.signatures import SignatureScheme

log = structlog.get_logger("ingest_worker.gateway")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the caller decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GatewayServer:
    """The gateway on `config.host:config.port`; `port` is the bound port once started."""

    def __init__(
        self,
        settings: Settings,
        config: GatewaySettings,
        *,
        dev: bool = False,
        sources: Sequence[Source] = SOURCES,
        schemes: Mapping[str, SignatureScheme] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.dev = dev
        self.metrics = GatewayMetrics()
        self.forwarder = Forwarder(settings, config, self.metrics)
        self.app = create_app(
            settings,
            config,
            self.forwarder,
            sources=sources,
            dev=dev,
            metrics=self.metrics,
            schemes=schemes,
        )
        self.reads = attach_backend(self.app, settings, config)
        self.sources = [s.name for s in sources]
        uvicorn_config = uvicorn.Config(
            self.app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            http=guarded_httptools(
                config.header_timeout_seconds,
                config.max_header_bytes,
                self.metrics.header_timeouts.inc,
            ),
            limit_concurrency=config.limit_concurrency,
            timeout_keep_alive=config.timeout_keep_alive_seconds,
        )
        self._server = _Server(uvicorn_config)
        self._task: asyncio.Task[None] | None = None
        self.port = config.port

    async def start(self) -> None:
        telemetry.configure("ingest-gateway")
        unprotected = CredentialStore(self.config).unprotected(
            [*self.sources, "pagerduty", "external"]
        )
        if self.dev and unprotected:
            log.warning(
                "gateway_dev_mode_accepts_unauthenticated_requests",
                sources=sorted(set(unprotected)),
                warning="DEV MODE: requests for these sources are accepted WITHOUT "
                "authentication. Never run `ingest-worker dev` where others can reach it.",
            )
        elif unprotected:
            log.info(
                "gateway_sources_without_credentials_refused", sources=sorted(set(unprotected))
            )
        await self.forwarder.start()
        if self.reads is not None:
            await self.reads.start()
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the gateway's HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        log.info("gateway_listening", host=self.config.host, port=self.port, dev=self.dev)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, then flush and close the producer."""
        self._server.should_exit = True
        if self.reads is not None:
            self.reads.closing()  # streams never end by themselves
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, self.settings.shutdown_grace_seconds + 5)
        if self.reads is not None:
            await self.reads.stop()
        await self.forwarder.stop()
        telemetry.flush()


async def serve(settings: Settings, config: GatewaySettings, *, dev: bool = False) -> int:
    """`ingest-worker gateway`: serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(settings, config, dev=dev)
    await server.start()
    # As in the worker: a request allocates many short-lived objects, and with CPython's default
    # thresholds collections walking the whole (long-lived) heap run far too often.
    runtime.tune_gc(settings.gc_threshold)
    try:
        await stop.wait()
    finally:
        log.info("gateway_stopping")
        await server.stop()
    return 0
