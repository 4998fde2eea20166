"""`ingest-worker notify` (and `notify replay`), and the notifier that `dev` starts beside the worker.

The wiring of `ingest_worker.notify` from the settings: subscriptions file, Kafka options, the
outbound policy, and `/healthz`, `/readyz`, `/metrics` on `INGEST_NOTIFY_HTTP_PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ingest_worker.metrics import Metrics
from ingest_worker.notify.destinations import DestinationPolicy
from ingest_worker.notify.dispatch import RetryPolicy
from ingest_worker.notify.metrics import NotifyMetrics
from ingest_worker.notify.notifier import Notifier, NotifierConfig
from ingest_worker.notify.sender import SenderConfig
from ingest_worker.notify.subscriptions import Subscription, SubscriptionsError, load_subscriptions
from ingest_worker.service.config import Settings
from ingest_worker.service.kafka_clients import client_options
from ingest_worker.service.logs import configure_logging

#: Exit code of a start-up refused for bad configuration.
EXIT_CONFIG = 2


def load_or_exit(settings: Settings) -> tuple[Subscription, ...]:
    """The subscriptions of INGEST_SUBSCRIPTIONS_FILE, or exit 2 with one line on stderr."""
    if not settings.subscriptions_file:
        print(
            "error: INGEST_SUBSCRIPTIONS_FILE is not set: point it at a subscriptions file (JSON or YAML)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG)
    try:
        return load_subscriptions(settings.subscriptions_file)
    except SubscriptionsError as exc:
        print(f"error: subscriptions file {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def notifier_config(settings: Settings, *, dev: bool) -> NotifierConfig:
    try:
        policy = DestinationPolicy.from_config(settings.notify_allowed_networks, allow_loopback=dev)
    except ValueError as exc:
        print(f"error: INGEST_NOTIFY_ALLOWED_NETWORKS: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return NotifierConfig(
        topic=settings.topic_incident_events,
        dlq_topic=settings.topic_notifications_dlq,
        group_id=settings.notify_group_id,
        kafka_options=client_options(settings),
        retry=RetryPolicy(
            initial=settings.notify_retry_initial_seconds,
            cap=settings.notify_retry_max_seconds,
            queue_size=settings.notify_queue_size,
            lanes=settings.notify_lanes,
            pause_seconds=settings.notify_pause_seconds,
        ),
        sender=SenderConfig(
            connect_timeout=settings.notify_connect_timeout_seconds,
            read_timeout=settings.notify_read_timeout_seconds,
            console_url=settings.console_url,
            policy=policy,
        ),
        client_id=f"{settings.client_id}-notify",
        session_timeout_ms=settings.session_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        auto_offset_reset=settings.auto_offset_reset,
    )


async def serve_notifier(
    settings: Settings, subscriptions: tuple[Subscription, ...], stop: asyncio.Event, *, dev: bool
) -> int:
    """Run the notifier and its probe server until `stop` is set."""
    from ingest_worker.service.http import HealthApp, HealthServer, HealthState

    metrics = Metrics()
    notifier = Notifier(
        subscriptions, notifier_config(settings, dev=dev), NotifyMetrics(metrics.registry)
    )
    state = HealthState(
        consumer_alive=lambda: notifier.alive,
        partitions_assigned=lambda: notifier.joined,
        database_ok=True,  # the notifier has no database
        broker_ok=True,
    )
    server = HealthServer(HealthApp(state, metrics), settings.http_host, settings.notify_http_port)
    await server.start()
    try:
        await notifier.run(stop)
    finally:
        await server.stop()
    return 0


def _signals_set(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def cmd_notify(args: argparse.Namespace, settings_of: Callable[[], Settings]) -> int:
    settings = settings_of()
    configure_logging(settings.log_level, settings.log_format)
    subscriptions = load_or_exit(settings)
    if args.action == "replay":
        return _replay(settings, subscriptions, args)

    async def main() -> int:
        stop = asyncio.Event()
        _signals_set(stop)
        return await serve_notifier(settings, subscriptions, stop, dev=args.dev)

    from ingest_worker.service import runtime

    return runtime.run(main, event_loop=settings.event_loop)


def _replay(settings: Settings, subscriptions: tuple[Subscription, ...], args: Any) -> int:
    from ingest_worker.notify.replay import replay

    chosen = [s for s in subscriptions if not args.subscription or s.id in args.subscription]
    unknown = set(args.subscription or ()) - {s.id for s in subscriptions}
    if unknown:
        print(
            f"error: no such subscription in the file: {', '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    results = asyncio.run(
        replay(chosen, notifier_config(settings, dev=args.dev), max_seconds=args.max_seconds)
    )
    failed = False
    for result in results:
        line = f"{result.subscription}: {result.sent} event(s) sent again"
        if result.failed is not None:
            failed = True
            line += f"; stopped at an event that failed ({result.failed.reason})"
        for skipped in result.skipped:
            line += f"; skipped {skipped}"
        print(line)
    return 1 if failed else 0


def add_notify_command(sub: Any, settings_of: Callable[[], Settings], dev_help: str) -> None:
    notify = sub.add_parser(
        "notify",
        help="deliver incident events to the HTTP subscriptions of INGEST_SUBSCRIPTIONS_FILE "
        "(`notify replay`: send the parked ones again)",
    )
    notify.add_argument("action", nargs="?", choices=["replay"], help="replay parked events")
    notify.add_argument(
        "--subscription", action="append", help="replay: only this subscription (repeatable)"
    )
    notify.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="replay: how long one event is retried before the replay stops (default 60)",
    )
    notify.add_argument("--dev", action="store_true", help=dev_help + "; loopback URLs allowed")
    notify.set_defaults(func=lambda args: cmd_notify(args, settings_of))


def with_notifier(
    settings: Settings, run: Callable[[Settings], Awaitable[int]]
) -> Callable[[Settings], Awaitable[int]]:
    """`run` (the dev worker) with the notifier beside it when INGEST_SUBSCRIPTIONS_FILE is set.

    The file is read now, so that a bad one stops `dev` before anything starts."""
    if not settings.subscriptions_file:
        return run
    subscriptions = load_or_exit(settings)
    print(
        f"notifications: {len(subscriptions)} subscription(s) from {settings.subscriptions_file}"
        f" (loopback allowed); notifier metrics on :{settings.notify_http_port}/metrics",
        flush=True,
    )

    async def both(current: Settings) -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(serve_notifier(current, subscriptions, stop, dev=True))
        try:
            return await run(current)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, current.shutdown_grace_seconds)

    return both
