"""The `ingest-worker` command line: run, migrate, dev, gateway, send, incidents, verify, replay, asyncapi."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from ingest_worker.core.tenants import check_tenant
from ingest_worker.service.config import DEV_DATABASE_URL, DEV_KAFKA_BOOTSTRAP_SERVERS, Settings
from ingest_worker.service.logs import configure_logging

_DEV = False

#: The incident of examples/deploy-status-red.jsonl.
SAMPLE_KEY = "deploy_status:prod:deploy-2026-11-23-001:2026-11-23T09:00:00Z"


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment; with `--dev`, the `ingest-worker dev` endpoints are the defaults."""
    if _DEV:
        overrides.setdefault(
            "kafka_bootstrap_servers",
            os.environ.get("INGEST_KAFKA_BOOTSTRAP_SERVERS", DEV_KAFKA_BOOTSTRAP_SERVERS),
        )
        overrides.setdefault(
            "database_url", os.environ.get("INGEST_DATABASE_URL", DEV_DATABASE_URL)
        )
    return Settings(**overrides)


async def _run_worker(settings: Settings) -> int:
    from ingest_worker.service.runtime import tune_gc
    from ingest_worker.service.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    # The worker process only (in-process workers of the tests leave the collector alone).
    tune_gc(settings.gc_threshold)
    try:
        await worker.serve(stop)
    except Exception as exc:
        from ingest_worker.core.errors import ShutdownRequested

        if not isinstance(exc, ShutdownRequested):
            raise
    return 0


def cmd_run(_: argparse.Namespace) -> int:
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    from ingest_worker.service import runtime

    return runtime.run(lambda: _run_worker(settings), event_loop=settings.event_loop)


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)


def cmd_migrate(_: argparse.Namespace) -> int:
    from ingest_worker.store.migrations import migrate

    async def main() -> int:
        conn = await _connect(_settings())
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        print(
            f"applied {len(applied)} migration(s): {[f'{m.version:04d}_{m.name}' for m in applied]}"
        )
        return 0

    return asyncio.run(main())


def cmd_verify(args: argparse.Namespace) -> int:
    from ingest_worker.store.audit import verify_chains

    async def main() -> int:
        conn = await _connect(_settings())
        try:
            breaks = await verify_chains(conn, getattr(args, "tenant", None))
        finally:
            await conn.close()
        for item in breaks:
            print(f"BROKEN: {item}")
        print(f"hash chains: {len(breaks)} break(s)")
        return 1 if breaks else 0

    return asyncio.run(main())


def cmd_replay(args: argparse.Namespace) -> int:
    from ingest_worker.store.audit import replay_check

    if not args.check:
        print(
            "only `replay --check` is supported: the projection is rebuilt and compared, not written"
        )
        return 2

    async def main() -> int:
        conn = await _connect(_settings())
        try:
            diffs = await replay_check(conn, getattr(args, "tenant", None))
        finally:
            await conn.close()
        for item in diffs:
            print(f"DIFF: {item}")
        print(f"replay --check: {len(diffs)} difference(s)")
        return 1 if diffs else 0

    return asyncio.run(main())


def cmd_incidents(args: argparse.Namespace) -> int:
    from ingest_worker.service.cli_reads import incident_rows

    async def main() -> int:
        conn = await _connect(_settings())
        try:
            rows = await incident_rows(conn, args)
        finally:
            await conn.close()
        if args.json:
            for row in rows:
                print(json.dumps(dict(row.items()), default=str))
            return 0
        print(f"{'SEVERITY':8} {'STATUS':12} {'COUNT':>5} {'ERROR_CODE':22} INCIDENT_KEY")
        for row in rows:
            print(
                f"{row['severity']:8} {row['status']:12} {row['occurrence_count']:>5} "
                f"{row['error_code'] or '':22} {row['incident_key']}"
            )
        print(f"({len(rows)} incident(s))")
        return 0

    return asyncio.run(main())


def _lines(path: str) -> Iterator[bytes]:
    stream = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    with stream:
        for line in stream:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def cmd_send(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ingest_worker.service.kafka_clients import make_producer

    settings = _settings()
    if args.source is not None:
        if args.file is not None:
            raise SystemExit("with --source, give only the file")
        args.file, args.topic = args.topic, settings.topic_of(args.source)
    elif args.file is None:
        raise SystemExit("send needs a topic and a file, or --source NAME and a file")
    values = list(_lines(args.file))

    async def main() -> int:
        producer = make_producer(settings)
        await producer.start()
        try:
            with Progress(disable=args.quiet) as progress:
                task = progress.add_task(f"sending to {args.topic}", total=len(values))
                futures = []
                for value in values:
                    future = await producer.send(args.topic, value=value)
                    future.add_done_callback(lambda _: progress.advance(task))
                    futures.append(future)
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        print(f"sent {len(values)} record(s) to {args.topic}")
        return 0

    return asyncio.run(main())


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from ingest_worker.service.asyncapi import asyncapi_document

    text = json.dumps(asyncapi_document(_settings()), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from ingest_worker.service.contracts import write_json_schemas

    write_json_schemas(Path(args.output_dir))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Embedded PostgreSQL + broker on the fixed dev ports, migrations, and the worker."""
    from ingest_worker.service.embedded import embedded_services
    from ingest_worker.service.gateway import GatewaySettings
    from ingest_worker.service.gateway.dev import curl_example, with_gateway

    kafka_port = int(os.environ.get("INGEST_DEV_KAFKA_PORT", "9092"))
    pg_port = int(os.environ.get("INGEST_DEV_POSTGRES_PORT", "54329"))
    os.environ.setdefault(
        "INGEST_KAFKA_BOOTSTRAP_SERVERS",
        DEV_KAFKA_BOOTSTRAP_SERVERS.replace("9092", str(kafka_port)),
    )
    os.environ.setdefault("INGEST_DATABASE_URL", DEV_DATABASE_URL.replace("54329", str(pg_port)))
    os.environ.setdefault("INGEST_LOG_FORMAT", "console")
    settings = _settings()
    gateway = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    exe = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "ingest-worker"
    exe = ".venv/bin/ingest-worker" if Path(".venv/bin/ingest-worker").exists() else exe
    with contextlib.ExitStack() as stack:
        print(
            f"starting embedded PostgreSQL on 127.0.0.1:{pg_port} and broker on "
            f"127.0.0.1:{kafka_port} …",
            flush=True,
        )
        stack.enter_context(embedded_services(kafka_port=kafka_port, postgres_port=pg_port))
        print(
            "\nready. In another terminal:\n"
            f"  send a RED deploy-status signal:\n"
            f"    {exe} send --dev {settings.topic_of('deploy_status')} examples/deploy-status-red.jsonl\n"
            f"  show the incidents:\n"
            f"    {exe} incidents --dev\n"
            f"  acknowledge, then resolve the sample incident, and show its timeline:\n"
            f"    {exe} acknowledge --dev {SAMPLE_KEY} --actor alice --role ONCALL_ENGINEER\n"
            f"    {exe} resolve --dev {SAMPLE_KEY} --actor alice --role ONCALL_ENGINEER "
            f"--rationale 'rolled back'\n"
            f"    {exe} timeline --dev {SAMPLE_KEY}\n"
            f"  health and metrics: curl localhost:{settings.http_port}/readyz  ·  /metrics\n"
            f"{curl_example(gateway.port)}"
            f"  webhook gateway on :{gateway.port}, UNAUTHENTICATED (dev only): /docs, /readyz\n"
            f"  web console: http://localhost:{gateway.port}/\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            from ingest_worker.service import runtime

            return runtime.run(
                lambda: with_gateway(settings, _run_worker, gateway),
                event_loop=settings.event_loop,
            )
    return 0


def cmd_gateway(_: argparse.Namespace) -> int:
    """The webhook gateway (SPEC §9): HTTP → the source topics, 202 once acknowledged."""
    from ingest_worker.service.gateway import GatewaySettings, serve

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings, GatewaySettings()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest-worker",
        description="Turn failure signals on Kafka into incidents in PostgreSQL and incident.* events. "
        "Configured with INGEST_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the worker").set_defaults(func=cmd_run)
    dev_help = (
        "talk to the services of `ingest-worker dev` (unless INGEST_* variables say otherwise)"
    )
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--dev", action="store_true", help=dev_help)
    migrate.set_defaults(func=cmd_migrate)
    sub.add_parser(
        "dev", help="embedded PostgreSQL + broker + worker + gateway, on fixed ports"
    ).set_defaults(func=cmd_dev)
    sub.add_parser(
        "gateway", help="the webhook gateway: HTTP POSTs from alerting tools → source topics"
    ).set_defaults(func=cmd_gateway)
    send = sub.add_parser(
        "send", help="publish each line of a JSONL file (or - for stdin) to a topic"
    )
    send.add_argument("topic", help="the topic (or, with --source, the file)")
    send.add_argument("file", nargs="?")
    send.add_argument("--source", help="a registered source name: its configured topic")
    send.add_argument("--quiet", action="store_true")
    send.add_argument("--dev", action="store_true", help=dev_help)
    send.set_defaults(func=cmd_send)
    incidents = sub.add_parser("incidents", help="list the most recent incidents")
    incidents.add_argument("--limit", type=int, default=20)
    incidents.add_argument("--json", action="store_true")
    incidents.add_argument("--dev", action="store_true", help=dev_help)
    from ingest_worker.service.cli_reads import add_filter_arguments

    add_filter_arguments(incidents)
    incidents.set_defaults(func=cmd_incidents)
    verify = sub.add_parser("verify", help="recompute every hash chain; exit 1 on a break")
    verify.add_argument("--dev", action="store_true", help=dev_help)
    verify.add_argument("--tenant", type=check_tenant, help="only this tenant (default: all)")
    verify.set_defaults(func=cmd_verify)
    replay = sub.add_parser("replay", help="rebuild incidents from events and compare (--check)")
    replay.add_argument("--check", action="store_true")
    replay.add_argument("--dev", action="store_true", help=dev_help)
    replay.add_argument("--tenant", type=check_tenant, help="only this tenant (default: all)")
    replay.set_defaults(func=cmd_replay)
    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI document of every topic")
    asyncapi.add_argument("--output")
    asyncapi.set_defaults(func=cmd_asyncapi)
    schemas = sub.add_parser("schemas", help="write the JSON Schema of every accepted payload")
    schemas.add_argument("--output-dir", default="docs/schemas")
    schemas.set_defaults(func=cmd_schemas)
    from ingest_worker.service.cli_lifecycle import add_lifecycle_commands

    add_lifecycle_commands(sub, _settings, dev_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _DEV
    args = build_parser().parse_args(argv)
    _DEV = bool(getattr(args, "dev", False))
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
