"""Timestamp forms of external tools, each read exactly, never through a float.

- `ToolTimestamp`: RFC 3339 as `wire.Timestamp`, also with `+hhmm` offsets (PagerDuty,
  CloudWatch: `2021-01-01T00:00:00.000+0000`) and `YYYY-MM-DD HH:MM:SS` with an offset.
- `EpochMillis` / `EpochNanos`: integers (or strings of digits, as Datadog renders `$DATE` in a
  quoted template) of milliseconds / nanoseconds since the epoch (New Relic, Opsgenie, Datadog).
- `OptionalEnd`: Alertmanager's and Grafana's `endsAt`, where `0001-01-01T00:00:00Z` means
  "not ended" and reads as None.
- `OptionalStart`: their `startsAt`, where the zero time (Grafana's test notifications, alerts
  built without a start) and an absent or empty value read as None: "no start time".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.sources.wire import parse_timestamp

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Epoch values beyond year 9999 are refused (datetime cannot hold them).
MAX_EPOCH_SECONDS: Final = 253_402_300_799

_COMPACT_OFFSET = re.compile(r"^(.*[0-9])([+-])(\d{2})(\d{2})$")
#: Go's zero `time.Time`: "not ended" in `endsAt`, "no start time" in `startsAt`.
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def parse_tool_timestamp(value: object) -> datetime:
    """RFC 3339, also with a `+hhmm` offset or a space instead of `T`."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 19 and text[10] == " ":
            text = text[:10] + "T" + text[11:]
        match = _COMPACT_OFFSET.match(text)
        if match and ":" in match.group(1)[-9:]:
            text = f"{match.group(1)}{match.group(2)}{match.group(3)}:{match.group(4)}"
        return parse_timestamp(text)
    return parse_timestamp(value)


def _epoch(value: object, per_second: int) -> datetime:
    if isinstance(value, bool):
        raise ValueError("must be an integer count since the epoch")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be an integer count since the epoch (not a float)")
    seconds, rest = divmod(value, per_second)
    if not 0 <= seconds <= MAX_EPOCH_SECONDS:
        raise ValueError("is out of the supported date range")
    micros = rest * 1_000_000 // per_second
    return EPOCH + timedelta(seconds=seconds, microseconds=micros)


def parse_epoch_millis(value: object) -> datetime:
    return _epoch(value, 1_000)


def parse_epoch_nanos(value: object) -> datetime:
    return _epoch(value, 1_000_000_000)


def parse_optional_time(value: object) -> datetime | None:
    """None for null, "" and Go's zero time (`0001-01-01T00:00:00Z`, any year-1 instant)."""
    if value is None or value == "" or value == _ZERO_TIME:
        return None
    moment = parse_tool_timestamp(value)
    return None if moment.year == 1 else moment


def _serialize(moment: datetime) -> str:
    return utc_timestamp(moment)


def _serialize_optional(moment: datetime | None) -> str | None:
    return None if moment is None else utc_timestamp(moment)


ToolTimestamp = Annotated[
    datetime,
    BeforeValidator(parse_tool_timestamp),
    PlainSerializer(_serialize, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "RFC 3339, offsets as +hh:mm or +hhmm."}),
]
EpochMillis = Annotated[
    datetime,
    BeforeValidator(parse_epoch_millis),
    PlainSerializer(_serialize, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["integer", "string"], "description": "milliseconds since the epoch"}),
]
EpochNanos = Annotated[
    datetime,
    BeforeValidator(parse_epoch_nanos),
    PlainSerializer(_serialize, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["integer", "string"], "description": "nanoseconds since the epoch"}),
]
OptionalEnd = Annotated[
    datetime | None,
    BeforeValidator(parse_optional_time),
    PlainSerializer(_serialize_optional, return_type=str | None, when_used="json"),
    WithJsonSchema(
        {
            "type": ["string", "null"],
            "description": "RFC 3339; 0001-01-01T00:00:00Z means not ended",
        }
    ),
]
OptionalStart = Annotated[
    datetime | None,
    BeforeValidator(parse_optional_time),
    PlainSerializer(_serialize_optional, return_type=str | None, when_used="json"),
    WithJsonSchema(
        {
            "type": ["string", "null"],
            "description": (
                "RFC 3339; 0001-01-01T00:00:00Z (or no value) means no start time: a firing "
                "alert then takes the notification's time"
            ),
        }
    ),
]
