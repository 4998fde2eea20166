"""`ingest-worker incidents` filters: the read API's filters, through the same query module.

`incidents --status OPEN --severity RED --env prod --since 1h --tenant acme` lists what the
read API's `GET /v1/incidents?status=OPEN&severity=RED&env=prod&since=…` lists, as the
`ingest_reader` role with the tenant set (default: `default`).
"""

from __future__ import annotations

import argparse
import re
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest_worker.core.incident import Status
from ingest_worker.sources.wire import parse_timestamp
from ingest_worker.store import reads
from ingest_worker.store.cursors import SORTS, IncidentFilter
from ingest_worker.store.incidents import Connection

_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def since_value(text: str) -> datetime:
    """RFC 3339 (`2026-01-01T00:00:00Z`) or a duration back from now (`90s`, `30m`, `1h`, `7d`)."""
    match = _DURATION.match(text.strip())
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give an RFC 3339 time with offset or a duration such as 30m, 1h, 7d ({exc})"
        ) from None


def tenant_value(text: str) -> str:
    if not TENANT.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tenant id ([a-z0-9][a-z0-9-]{{0,62}})")
    return text


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The read API's list filters as options (repeatable ones ORed, different ones ANDed)."""
    parser.add_argument(
        "--status", action="append", choices=[s.value for s in Status], help="repeatable"
    )
    parser.add_argument("--severity", action="append", choices=("RED", "YELLOW"), help="repeatable")
    parser.add_argument("--source", action="append", help="source kind (repeatable)")
    parser.add_argument("--env", action="append", help="environment (repeatable)")
    parser.add_argument(
        "--since", type=since_value, help="last seen at or after: RFC 3339, or 30m / 1h / 7d ago"
    )
    parser.add_argument("--q", help="title substring (any case)")
    parser.add_argument(
        "--sort", choices=SORTS, default="-lastSeen", help="order (default -lastSeen)"
    )
    parser.add_argument(
        "--tenant", type=tenant_value, default="default", help="whose incidents (default: default)"
    )


def incident_filter(args: argparse.Namespace) -> IncidentFilter:
    return IncidentFilter(
        statuses=tuple(args.status or ()),
        severities=tuple(args.severity or ()),
        sources=tuple(args.source or ()),
        envs=tuple(args.env or ()),
        q=args.q or None,
        since=args.since,
        sort=args.sort,
    )


async def incident_rows(conn: Connection, args: argparse.Namespace) -> list[Any]:
    """Up to `args.limit` matching incidents of `args.tenant`, as rows of the list's columns."""
    rows: list[Any] = []
    if args.limit < 1:
        return rows
    flt = incident_filter(args)
    page = max(1, min(args.limit, reads.EXPORT_PAGE))
    async with (
        reads.reading_on(conn, args.tenant, snapshot=True),
        aclosing(reads.iter_rows(conn, args.tenant, flt, page=page)) as matches,
    ):
        async for row in matches:
            rows.append(row)
            if len(rows) >= args.limit:
                break
    return rows
