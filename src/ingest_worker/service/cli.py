"""The `ingest-worker` command line: run, migrate, dev, gateway, send, incidents, verify, replay, …

Errors are one sentence on stderr (exit 2 for usage, 1 for runtime failures), never a traceback:
see `cli_errors`. With `--dev`, every command talks to the services of `ingest-worker dev` at the
addresses `dev_addresses.dev_addresses` decides for both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.tenants import check_tenant
from ingest_worker.service.cli_errors import Parser, UsageError, connect_postgres, explain
from ingest_worker.service.config import Settings
from ingest_worker.service.logs import configure_logging

_DEV = False

#: The incident of examples/deploy-status-red.jsonl.
SAMPLE_KEY = "deploy_status:prod:deploy-2026-11-23-001:2026-11-23T09:00:00Z"

DEV_HELP = (
    "talk to the services of `ingest-worker dev` (its ports follow INGEST_DEV_POSTGRES_PORT and "
    "INGEST_DEV_KAFKA_PORT; INGEST_DATABASE_URL and INGEST_KAFKA_BOOTSTRAP_SERVERS win when set)"
)


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment; with `--dev`, the `ingest-worker dev` addresses are the
    defaults (the one function that decides them for `dev` too)."""
    if _DEV:
        from ingest_worker.service.dev_addresses import dev_addresses

        dev = dev_addresses()
        overrides.setdefault("kafka_bootstrap_servers", dev.kafka_bootstrap_servers)
        overrides.setdefault("database_url", dev.database_url)
        overrides.setdefault("http_port", dev.http_port)
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
    if settings.worker_processes > 1:
        from ingest_worker.service.processes import supervise

        return supervise(settings)
    from ingest_worker.service import runtime

    return runtime.run(lambda: _run_worker(settings), event_loop=settings.event_loop)


def cmd_migrate(_: argparse.Namespace) -> int:
    from ingest_worker.store.migrations import migrate

    async def main() -> int:
        conn = await connect_postgres(_settings())
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
        conn = await connect_postgres(_settings())
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
        raise UsageError(
            "ingest-worker replay: only `replay --check` is supported (the projection is rebuilt "
            "and compared, never written): add --check"
        )

    async def main() -> int:
        conn = await connect_postgres(_settings())
        try:
            diffs = await replay_check(conn, getattr(args, "tenant", None))
        finally:
            await conn.close()
        for item in diffs:
            print(f"DIFF: {item}")
        print(f"replay --check: {len(diffs)} difference(s)")
        return 1 if diffs else 0

    return asyncio.run(main())


#: `incidents --json`: column → field, named as the read API names its items' fields.
_INCIDENT_FIELDS = {
    "id": "id", "incident_key": "incidentKey", "episode": "episode", "title": "title",
    "status": "status", "severity": "severity", "source_kind": "source", "env": "env",
    "correlation_keys": "correlationKeys", "occurrence_count": "occurrenceCount",
    "first_seen_at": "firstSeenAt", "last_seen_at": "lastSeenAt", "created_at": "createdAt",
    "updated_at": "updatedAt", "acknowledged_at": "acknowledgedAt", "mitigated_at": "mitigatedAt",
    "resolved_at": "resolvedAt", "closed_at": "closedAt", "resolved_by": "resolvedBy",
    "reopen_count": "reopenCount", "previous_incident_id": "previousIncidentId",
}  # fmt: skip


def incident_json(row: Mapping[str, Any] | asyncpg.Record) -> dict[str, Any]:
    """One incident as `incidents --json` prints it: times in RFC 3339 (UTC, `Z`), ids as text."""
    item: dict[str, Any] = {}
    for column, name in _INCIDENT_FIELDS.items():
        value = row[column]
        if isinstance(value, datetime):
            value = utc_timestamp(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = list(value)
        item[name] = value
    return item


def cmd_incidents(args: argparse.Namespace) -> int:
    from ingest_worker.service.cli_reads import incident_rows

    async def main() -> int:
        conn = await connect_postgres(_settings())
        try:
            rows = await incident_rows(conn, args)
        finally:
            await conn.close()
        if args.json:
            for row in rows:
                print(json.dumps(incident_json(row)))
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


def cmd_dev(_: argparse.Namespace) -> int:
    """Embedded PostgreSQL + broker on the dev ports, migrations, the worker and the gateway."""
    from ingest_worker.service.dev_addresses import dev_addresses
    from ingest_worker.service.embedded import embedded_services
    from ingest_worker.service.gateway import GatewaySettings
    from ingest_worker.service.gateway.dev import curl_example, with_gateway

    dev = dev_addresses()
    for name, value in dev.environment().items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("INGEST_LOG_FORMAT", "console")
    settings = _settings()
    gateway = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    exe = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "ingest-worker"
    exe = ".venv/bin/ingest-worker" if Path(".venv/bin/ingest-worker").exists() else exe
    from ingest_worker.service.cli_notify import with_notifier

    worker = with_notifier(settings, _run_worker)  # a bad subscriptions file exits 2 here
    with contextlib.ExitStack() as stack:
        print(
            f"starting embedded PostgreSQL on 127.0.0.1:{dev.postgres_port} and broker on "
            f"127.0.0.1:{dev.kafka_port} …",
            flush=True,
        )
        stack.enter_context(
            embedded_services(kafka_port=dev.kafka_port, postgres_port=dev.postgres_port)
        )
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
            f"  the dead letters (records the worker refused, with the reason):\n"
            f"    {exe} dead-letters --dev\n"
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
                lambda: with_gateway(settings, worker, gateway),
                event_loop=settings.event_loop,
            )
    return 0


def cmd_gateway(_: argparse.Namespace) -> int:
    """The webhook gateway: HTTP → the source topics, 202 once acknowledged."""
    from ingest_worker.service import runtime
    from ingest_worker.service.gateway import GatewaySettings, serve

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    return runtime.run(lambda: serve(settings, GatewaySettings()), event_loop=settings.event_loop)


def limit_argument(text: str) -> int:
    """`--limit`: a whole number from 1 to 1000."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000, not {value}")
    return value


def _add_store_commands(sub: Any) -> None:
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--dev", action="store_true", help=DEV_HELP)
    migrate.set_defaults(func=cmd_migrate)
    incidents = sub.add_parser("incidents", help="list the most recent incidents")
    incidents.add_argument(
        "--limit",
        type=limit_argument,
        default=20,
        help="how many incidents, newest first (1-1000; default 20)",
    )
    incidents.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per incident and line: every field, times in RFC 3339",
    )
    incidents.add_argument("--dev", action="store_true", help=DEV_HELP)
    from ingest_worker.service.cli_reads import add_filter_arguments

    add_filter_arguments(incidents)
    incidents.set_defaults(func=cmd_incidents)
    verify = sub.add_parser("verify", help="recompute every hash chain; exit 1 on a break")
    verify.add_argument("--dev", action="store_true", help=DEV_HELP)
    verify.add_argument("--tenant", type=check_tenant, help="only this tenant (default: all)")
    verify.set_defaults(func=cmd_verify)
    replay = sub.add_parser("replay", help="rebuild incidents from events and compare (--check)")
    replay.add_argument(
        "--check",
        action="store_true",
        help="rebuild every incident from its events and compare with the table (required)",
    )
    replay.add_argument("--dev", action="store_true", help=DEV_HELP)
    replay.add_argument("--tenant", type=check_tenant, help="only this tenant (default: all)")
    replay.set_defaults(func=cmd_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ingest-worker",
        description="Turn failure signals on Kafka into incidents in PostgreSQL and incident.* events. "
        "Configured with INGEST_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the worker").set_defaults(func=cmd_run)
    sub.add_parser(
        "dev", help="embedded PostgreSQL + broker + worker + gateway, on the dev ports"
    ).set_defaults(func=cmd_dev)
    sub.add_parser(
        "gateway", help="the webhook gateway: HTTP POSTs from alerting tools → source topics"
    ).set_defaults(func=cmd_gateway)
    _add_store_commands(sub)
    from ingest_worker.service.cli_dead_letters import add_dead_letters_command
    from ingest_worker.service.cli_send import add_send_command

    add_send_command(sub, _settings, DEV_HELP)
    add_dead_letters_command(sub, _settings, DEV_HELP)
    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI document of every topic")
    asyncapi.add_argument("--output", help="write the document to this file instead of stdout")
    asyncapi.set_defaults(func=cmd_asyncapi)
    schemas = sub.add_parser("schemas", help="write the JSON Schema of every accepted payload")
    schemas.add_argument(
        "--output-dir", default="docs/schemas", help="where to write them (default docs/schemas)"
    )
    schemas.set_defaults(func=cmd_schemas)
    from ingest_worker.service.cli_lifecycle import add_lifecycle_commands

    add_lifecycle_commands(sub, _settings, DEV_HELP)
    from ingest_worker.service.cli_notify import add_notify_command

    add_notify_command(sub, _settings, DEV_HELP)
    return parser


#: Commands that run a service and configure logging themselves.
_SERVICES = frozenset({"run", "dev", "gateway"})


def main(argv: list[str] | None = None) -> int:
    """Run one command; any failure is one line on stderr and exit 2 (usage) or 1 (runtime)."""
    global _DEV
    try:
        args = build_parser().parse_args(argv)
        _DEV = bool(getattr(args, "dev", False))
        if args.command not in _SERVICES:
            # The client library logs each failed connection attempt; the command says it once.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        message, code = explain(exc)
        print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
