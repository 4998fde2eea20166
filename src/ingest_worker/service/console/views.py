"""What the console's pages are made of: the list's query as read from the URL, and the
Jinja2 environment with the helpers its templates use (badges, times, durations, links).

The URL is the state: the filter parameters carry the read API's names (`status`, `severity`,
`source`, `env`, `correlationKey`, `incidentKey`, `q`, `since`, `until`, `timeField`, `sort`,
`limit`, `cursor`), so a console link and an API query say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import urlencode

import jinja2
from starlette.datastructures import QueryParams

from ingest_worker.service.gateway.read_models import SeverityName, StatusName
from ingest_worker.sources.wire import parse_timestamp
from ingest_worker.store.cursors import SORTS, TIME_FIELDS, IncidentFilter
from ingest_worker.store.reads import MAX_LIMIT

STATUSES: tuple[str, ...] = get_args(StatusName)
SEVERITIES: tuple[str, ...] = get_args(SeverityName)
REPEATED = ("status", "severity", "source", "env", "correlationKey", "incidentKey")
SINGLE = ("q", "since", "until", "timeField", "sort", "limit")
MAX_VALUES = 20
MAX_TEXT = 512
DEFAULT_LIMIT = 25


@dataclass(frozen=True)
class ListQuery:
    """The list as the URL asks for it: the form's values (as typed) and the filter."""

    values: dict[str, list[str]]
    flt: IncidentFilter
    limit: int
    cursor: str | None
    tenant: str | None = None
    errors: list[str] = field(default_factory=list)

    def url(self, **changes: str | None) -> str:
        """This list's URL (with `changes`, None removes one), for links and paging."""
        pairs: list[tuple[str, str]] = []
        if self.tenant is not None:
            pairs.append(("tenant", self.tenant))
        for name in (*REPEATED, *SINGLE):
            if name in changes:
                continue
            pairs.extend((name, v) for v in self.values.get(name, ()))
        pairs.extend((k, v) for k, v in changes.items() if v is not None)
        return "/?" + urlencode(pairs) if pairs else "/"

    def stream_url(self) -> str:
        pairs = [(k, v) for k, v in self._filter_pairs()]
        if self.tenant is not None:
            pairs.insert(0, ("tenant", self.tenant))
        return "/console/stream" + ("?" + urlencode(pairs) if pairs else "")

    def _filter_pairs(self) -> list[tuple[str, str]]:
        return [
            (name, v)
            for name in (*REPEATED, "q", "since", "until", "timeField", "sort")
            for v in self.values.get(name, ())
        ]

    def first(self, name: str) -> str:
        found = self.values.get(name)
        return found[0] if found else ""


def _clean(raw: str) -> str:
    return raw.strip().replace("\x00", "")[:MAX_TEXT]


def parse_query(params: QueryParams, tenant: str | None = None) -> ListQuery:
    """The list's query from the URL; empty form fields count as absent. An unusable value is
    reported (the list then applies the rest), never silently widened to "everything"."""
    values: dict[str, list[str]] = {}
    errors: list[str] = []
    for name in (*REPEATED, *SINGLE):
        found = [_clean(v) for v in params.getlist(name)]
        found = [v for v in found if v][:MAX_VALUES]
        if found:
            values[name] = found if name in REPEATED else found[:1]
    for name, allowed in (("status", STATUSES), ("severity", SEVERITIES)):
        bad = [v for v in values.get(name, ()) if v not in allowed]
        if bad:
            errors.append(f"{name}: unknown value {', '.join(bad)}")
            values[name] = [v for v in values[name] if v in allowed]
    times: dict[str, datetime | None] = {"since": None, "until": None}
    for name in times:
        text = values.get(name, [""])[0]
        if text:
            try:
                times[name] = parse_timestamp(text)
            except (TypeError, ValueError):
                errors.append(f"{name}: not an RFC 3339 time (like 2026-01-01T00:00:00Z)")
                values.pop(name)
    for name, allowed in (("sort", SORTS), ("timeField", TIME_FIELDS)):
        if values.get(name, [""])[0] not in ("", *allowed):
            errors.append(f"{name}: one of {', '.join(allowed)}")
            values.pop(name)
    limit = DEFAULT_LIMIT
    if "limit" in values:
        text = values["limit"][0]
        if text.isdigit() and 1 <= int(text) <= MAX_LIMIT:
            limit = int(text)
        else:
            errors.append(f"limit: a number from 1 to {MAX_LIMIT}")
            values.pop("limit")
    flt = IncidentFilter(
        statuses=tuple(values.get("status", ())),
        severities=tuple(values.get("severity", ())),
        sources=tuple(values.get("source", ())),
        envs=tuple(values.get("env", ())),
        correlation_keys=tuple(values.get("correlationKey", ())),
        incident_keys=tuple(values.get("incidentKey", ())),
        q=values.get("q", [None])[0],
        since=times["since"],
        until=times["until"],
        time_field=values.get("timeField", ["lastSeen"])[0],
        sort=values.get("sort", ["-lastSeen"])[0],
    )
    cursor = _clean(params.get("cursor") or "") or None
    return ListQuery(values, flt, limit, cursor, tenant, errors)


# ------------------------------------------------------------------ template helpers
def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        return None


def absolute(value: str | None) -> str:
    moment = _moment(value)
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{int(minutes)} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h {int(minutes % 60)} min"
    return f"{math.floor(hours / 24)} d {int(hours % 24)} h"


def relative(value: str | None, now: datetime | None = None) -> str:
    moment = _moment(value)
    if moment is None:
        return ""
    delta = ((now or datetime.now(UTC)) - moment).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def between(start: str | None, end: str | None) -> str | None:
    """The time from `start` to `end` (MTTA, MTTR), when both are known."""
    first, last = _moment(start), _moment(end)
    if first is None or last is None:
        return None
    return duration((last - first).total_seconds())


def detail_url(incident_id: str, tenant: str | None) -> str:
    suffix = "?" + urlencode({"tenant": tenant}) if tenant is not None else ""
    return f"/console/incidents/{incident_id}{suffix}"


def describe_actor(actor: Any) -> str:
    if isinstance(actor, Mapping):
        roles = actor.get("roles")
        shown = str(actor.get("id", "?"))
        if isinstance(roles, Sequence) and not isinstance(roles, str) and roles:
            shown += f" ({', '.join(str(r) for r in roles)})"
        return shown
    return ""


def describe_cause(cause: Any) -> str:
    if not isinstance(cause, Mapping):
        return "—"
    if cause.get("kind") == "command":
        return f"command {cause.get('command_id', '')}".strip()
    if cause.get("kind") == "signal":
        digest = str(cause.get("signal_sha256", ""))
        return f"signal {digest[:12]}…" if digest else "signal"
    return str(cause.get("kind", "—"))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ingest_worker.service.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(absolute=absolute, relative=relative, actor=describe_actor,
                       cause=describe_cause)  # fmt: skip
    env.globals.update(
        detail_url=detail_url, between=between, STATUSES=STATUSES, SEVERITIES=SEVERITIES,
        SORTS=SORTS, TIME_FIELDS=TIME_FIELDS,
    )  # fmt: skip
    return env
