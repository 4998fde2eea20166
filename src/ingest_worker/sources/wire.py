"""Wire models: the JSON payloads accepted on the signal topics (documented shapes and real envelopes).

Rules shared by every payload (the limits of the documented payload contract):
- field names as producers send them (camelCase for the documented signal shapes, AWS and
  GitHub names for theirs);
- extra fields are accepted and kept (they travel with the evidence);
- timestamps are RFC 3339 strings with an offset or `Z`; naive or out-of-range ones are rejected;
- strings: refs and ids ≤ 512 characters, titles and names ≤ 500, free text ≤ 5000;
  no NUL character nor unpaired surrogate anywhere (PostgreSQL jsonb cannot store them), extra
  fields included;
- lists ≤ 1000 items, integers bounded (exit codes fit int32, ids int64, any integer int64),
  floats finite, JSON nested at most 64 levels.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from ingest_worker.core.canonical import utc_timestamp

MAX_REF: Final = 512
MAX_NAME: Final = 500
MAX_TEXT: Final = 5000
MAX_ITEMS: Final = 1000
MAX_JSON_DEPTH: Final = 64
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

#: Validation context flag: the caller already ran `check_json_tree` on the input (decoding does,
#: to tell nesting depth, an invalid-JSON matter, apart from schema violations).
JSON_CHECKED: Final = "ingest_worker.json_checked"
#: Validation context entry: when the record was received (its Kafka timestamp, or the time it is
#: decoded); the time of a notification whose alerts carry none of their own.
RECORD_TIME: Final = "ingest_worker.record_time"


class UnsafeJson(ValueError):
    """JSON that PostgreSQL or canonical JSON cannot hold: too deep, NUL, number out of range."""

    def __init__(self, problem: Literal["depth", "text", "number"], message: str) -> None:
        super().__init__(message)
        self.problem = problem


def check_json_tree(value: object, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise `UnsafeJson` unless every string and key is storable text (no NUL, no unpaired
    surrogate), every number storable (finite, integers in int64), and the nesting at most
    `max_depth` levels deep. The message never contains input values."""
    _check(value, 0, max_depth)


def _check(value: object, depth: int, max_depth: int) -> None:
    kind = type(value)
    if kind is dict:
        if depth >= max_depth:
            raise UnsafeJson("depth", f"JSON is nested deeper than {max_depth} levels")
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise UnsafeJson("text", "an object key is not a string")
            _check_text(key)
            _check(item, depth + 1, max_depth)
    elif kind is list:
        if depth >= max_depth:
            raise UnsafeJson("depth", f"JSON is nested deeper than {max_depth} levels")
        for item in value:  # type: ignore[attr-defined]
            _check(item, depth + 1, max_depth)
    elif kind is str:
        _check_text(value)  # type: ignore[arg-type]
    elif kind is int:
        check_integer(value)  # type: ignore[arg-type]
    elif kind is float:
        check_float(value)  # type: ignore[arg-type]


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UnsafeJson(
            "text", "a string contains a NUL character (\\u0000), which cannot be stored"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UnsafeJson(
                "text", "a string contains an unpaired UTF-16 surrogate, which cannot be stored"
            ) from None


def check_integer(value: int) -> int:
    """`value` if it fits a signed 64-bit integer, else UnsafeJson."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise UnsafeJson("number", "an integer is out of the 64-bit range")
    return value


def check_float(value: float) -> float:
    """`value` if finite (JSON numbers too large for a double read as infinity), else UnsafeJson."""
    if not math.isfinite(value):
        raise UnsafeJson("number", "a number is out of the range of a 64-bit float")
    return value


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp with offset, as aware UTC datetime (sub-microsecond digits dropped)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        if _RFC3339.fullmatch(value) is None:
            raise ValueError("must be an RFC 3339 timestamp with a UTC offset or Z")
        try:  # Python ≥ 3.11 reads `Z` and drops fraction digits beyond microseconds.
            moment = datetime.fromisoformat(value.upper())
        except ValueError:
            raise ValueError("is not a valid date and time") from None
    else:
        raise ValueError("must be an RFC 3339 timestamp string")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("must carry a UTC offset or Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the supported date range") from None


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(utc_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": _RFC3339.pattern.join("^$"),
            "description": "RFC 3339 timestamp with a UTC offset or Z, e.g. 2024-01-01T00:00:00Z.",
        }
    ),
]
Ref = Annotated[str, StringConstraints(max_length=MAX_REF)]
RequiredRef = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REF)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
RequiredName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
ExitCode = Annotated[int, Field(strict=True, ge=INT32_MIN, le=INT32_MAX)]
Id64 = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Count32 = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]


class WireModel(BaseModel):
    """Any wire object: unknown fields allowed and kept, immutable, input never echoed in errors."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        hide_input_in_errors=True,
        field_title_generator=lambda name, field: field.alias or name,
    )


class Signal(WireModel):
    """A whole message value: also checks the entire JSON tree (extra fields included)."""

    @model_validator(mode="before")
    @classmethod
    def _storable_json(cls, data: Any, info: ValidationInfo) -> Any:
        context = info.context
        if not (isinstance(context, dict) and context.get(JSON_CHECKED)):
            check_json_tree(data)
        return data
