"""The incident list's filters, sorts and keyset cursors (pure: no I/O).

A cursor is opaque to clients: base64url of `[version, sort, filter digest, key…]`, where the
key is the sort key of the last item of the page. It is bound to the sort and the filters: the
same cursor with other filters is refused (`cursor_mismatch`) rather than silently giving a
page of another list. It carries no tenant: every query is scoped by the caller's tenant, so a
cursor taken to another tenant only positions within that tenant's own rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CURSOR_VERSION = 1
#: sort parameter → the suffix of its list statement (`list_by_<suffix>`).
SORT_COLUMNS = {
    "-lastSeen": "last_seen",
    "-created": "created",
    "-updated": "updated",
    "-severity": "severity",
}
SORTS = tuple(SORT_COLUMNS)
#: timeField parameter → the column `since` / `until` bound.
TIME_COLUMNS = {"lastSeen": "last_seen_at", "created": "created_at", "updated": "updated_at"}
TIME_FIELDS = tuple(TIME_COLUMNS)
_SORT_TIME = {"-lastSeen": "lastSeen", "-created": "created", "-updated": "updated"}
#: Severity ranks of the -severity sort (the index expression ranks the same way).
SEVERITY_RANK = {"RED": 2, "YELLOW": 1}

_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_MIN_TIME = datetime(1, 1, 1, tzinfo=UTC)
_MAX_ID = uuid.UUID(int=(1 << 128) - 1)
_NIL_ID = uuid.UUID(int=0)


class BadReadRequest(ValueError):
    """A read request the API answers with 400 and this stable `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _from_micros(micros: int) -> datetime:
    seconds, rest = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What a list asks for: repeatable filters are ORed within and ANDed across; empty = any."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    correlation_keys: tuple[str, ...] = ()
    incident_keys: tuple[str, ...] = ()
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    time_field: str = "lastSeen"
    sort: str = "-lastSeen"

    def __post_init__(self) -> None:
        if self.sort not in SORT_COLUMNS:
            raise BadReadRequest("invalid_parameter", f"sort must be one of {', '.join(SORTS)}")
        if self.time_field not in TIME_COLUMNS:
            raise BadReadRequest(
                "invalid_parameter", f"timeField must be one of {', '.join(TIME_FIELDS)}"
            )
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise BadReadRequest("invalid_parameter", f"{name} must carry a UTC offset")

    def digest(self) -> str:
        """What the list is (sort and filters, order of repeated values aside), hashed."""
        described = {
            "sort": self.sort,
            "timeField": self.time_field,
            "status": sorted(set(self.statuses)),
            "severity": sorted(set(self.severities)),
            "source": sorted(set(self.sources)),
            "env": sorted(set(self.envs)),
            "correlationKey": sorted(set(self.correlation_keys)),
            "incidentKey": sorted(set(self.incident_keys)),
            "q": self.q,
            "since": None if self.since is None else _micros(self.since),
            "until": None if self.until is None else _micros(self.until),
        }
        text = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filter_args(self) -> list[Any]:
        """The filter parameters ($5..$17) of the list and count statements."""

        def values(items: tuple[str, ...]) -> list[str] | None:
            return sorted(set(items)) if items else None

        bounds: list[datetime | None] = []
        for name in TIME_FIELDS_IN_SQL_ORDER:
            chosen = name == self.time_field
            bounds += [self.since if chosen else None, self.until if chosen else None]
        return [
            values(self.statuses),
            values(self.severities),
            values(self.sources),
            values(self.envs),
            values(self.correlation_keys),
            values(self.incident_keys),
            self.q or None,
            *bounds,
        ]


#: The order of the since/until pairs in the SQL ($12..$17).
TIME_FIELDS_IN_SQL_ORDER = ("created", "updated", "lastSeen")


def sort_key(flt: IncidentFilter, row: Any) -> tuple[Any, ...]:
    """The keyset key of a row (an asyncpg Record or a mapping of its columns) in `flt.sort`."""
    if flt.sort == "-severity":
        return (SEVERITY_RANK.get(row["severity"], 1), row["last_seen_at"], row["id"])
    return (row[TIME_COLUMNS[_SORT_TIME[flt.sort]]], row["id"])


def page_bounds(flt: IncidentFilter, key: tuple[Any, ...] | None) -> list[Any]:
    """The page's position parameters ($2..$4): below `key` (the last item seen, or the top),
    and, where the time filter is on the sort column, within since/until as index bounds."""
    if flt.sort == "-severity":
        return list(key) if key is not None else [3, _MAX_TIME, _MAX_ID]
    upper: tuple[datetime, uuid.UUID] = (_MAX_TIME, _MAX_ID)
    lower = _MIN_TIME
    if _SORT_TIME[flt.sort] == flt.time_field:
        if flt.until is not None:
            upper = min(upper, (flt.until, _NIL_ID))
        if flt.since is not None:
            lower = flt.since
    if key is not None:
        upper = min(upper, (key[0], key[1]))
    return [upper[0], upper[1], lower]


def encode_cursor(flt: IncidentFilter, row: Any) -> str:
    """The cursor of the page after `row`."""
    key = sort_key(flt, row)
    parts: list[Any] = [CURSOR_VERSION, flt.sort, flt.digest()]
    for value in key:
        if isinstance(value, datetime):
            parts.append(_micros(value))
        elif isinstance(value, uuid.UUID):
            parts.append(value.hex)
        else:
            parts.append(value)
    text = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(flt: IncidentFilter, cursor: str) -> tuple[Any, ...]:
    """The key a cursor continues after; refuses a cursor of another list or none at all."""
    invalid = BadReadRequest("invalid_cursor", "cursor is not a cursor of this API")
    if len(cursor) > 512:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(parts, list) or len(parts) < 3 or parts[0] != CURSOR_VERSION:
        raise invalid
    if parts[1] != flt.sort or parts[2] != flt.digest():
        raise BadReadRequest(
            "cursor_mismatch", "cursor belongs to another sort or other filters: start again"
        )
    try:
        if flt.sort == "-severity":
            rank, micros, hex_id = parts[3:]
            if not isinstance(rank, int) or rank not in SEVERITY_RANK.values():
                raise invalid
            return (rank, _from_micros(int(micros)), uuid.UUID(hex=str(hex_id)))
        micros, hex_id = parts[3:]
        return (_from_micros(int(micros)), uuid.UUID(hex=str(hex_id)))
    except (ValueError, TypeError, OverflowError, OSError):
        raise invalid from None
