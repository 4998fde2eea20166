"""Record decoding, the hot path: one Kafka record value → incident inputs, or a typed rejection.

`decode_record` never raises anything but `InvalidSignal`, whose message is human-readable
(field path and what is wrong), at most 1000 characters and never echoes input values, so that
secrets in bad input cannot reach logs or dead-letter headers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.redaction import any_identifier_holds_credential, redact_text
from ingest_worker.core.values import (
    Command,
    IncidentInput,
    Recovery,
    RejectedPart,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import source_named
from ingest_worker.sources.wire import (
    JSON_CHECKED,
    MAX_JSON_DEPTH,
    RECORD_TIME,
    Signal,
    UnsafeJson,
    check_float,
    check_integer,
    check_json_tree,
)

MAX_ERROR_MESSAGE: Final = 1000

_JSON_TYPES: Final = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

S = TypeVar("S", bound=Signal)
Inputs = tuple[SignalEffect, ...]


class _NotJson(ValueError):
    """Valid JSON syntax the contract rejects anyway (duplicate keys, NaN / Infinity)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _NotJson("an object has a duplicate key")
    return result


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _integer(text: str) -> int:
    if len(text) > 20:  # int64 has at most 19 digits and a sign; skip converting huge numbers
        raise UnsafeJson("number", "an integer is out of the 64-bit range")
    return check_integer(int(text))


def _float(text: str) -> float:
    return check_float(float(text))


# Numbers are checked while parsing; strings and nesting after it, only when the text hints at a
# problem (see `_may_be_unsafe`): most signals skip that walk.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_int=_integer, parse_float=_float
)


def _may_be_unsafe(text: str) -> bool:
    """False guarantees that parsed `text` passes `check_json_tree`, numbers aside.

    NUL and lone surrogates can only come from `\\u` escapes (raw control characters are invalid
    JSON, and UTF-8 cannot encode surrogates); nesting cannot exceed the count of `{` and `[`.
    """
    return (
        text.count("{") + text.count("[") > MAX_JSON_DEPTH
        or "\\u0000" in text
        or "\\ud" in text
        or "\\uD" in text
    )


def _invalid(reason: RejectReason, message: str) -> InvalidSignal:
    message = redact_text(message)
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 1] + "…"
    return InvalidSignal(reason, message)


def parse_json(text: str) -> Any:
    """Strict JSON. Raises InvalidSignal: INVALID_JSON for syntax errors, NaN / Infinity, duplicate
    keys or nesting deep enough to exhaust the parser; SCHEMA_VIOLATION for numbers out of range
    (integers beyond int64, floats beyond a double)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _invalid(
            RejectReason.INVALID_JSON,
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except _NotJson as exc:
        raise _invalid(RejectReason.INVALID_JSON, f"not valid JSON: {exc}") from None
    except UnsafeJson as exc:
        raise _invalid(RejectReason.SCHEMA_VIOLATION, str(exc)) from None
    except RecursionError:
        raise _invalid(
            RejectReason.INVALID_JSON, f"JSON is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError:  # defensive: any other number the parser cannot read
        raise _invalid(
            RejectReason.INVALID_JSON, "not valid JSON: a number cannot be read"
        ) from None


def describe_validation_error(exc: ValidationError) -> str:
    """`<n> validation error(s): field.path: what is wrong; …`, without input values."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = [
        f"{'.'.join(str(item) for item in error['loc']) or '(value)'}: {error['msg']}"
        for error in errors
    ]
    noun = "error" if len(errors) == 1 else "errors"
    return f"{exc.title}: {len(errors)} validation {noun}: " + "; ".join(parts)


def _validate(model: type[S], data: dict[str, Any], record_time: datetime) -> S:
    try:
        return model.model_validate(data, context={JSON_CHECKED: True, RECORD_TIME: record_time})
    except ValidationError as exc:
        raise _invalid(RejectReason.SCHEMA_VIOLATION, describe_validation_error(exc)) from None


def decode_record(
    source: Source | str,
    value: bytes | None,
    *,
    max_bytes: int,
    record_time: datetime | None = None,
) -> Inputs:
    """The incident inputs of one record value consumed on the topic of `source` (or its name).

    `record_time` is when the record was received (the worker passes its Kafka timestamp; None
    means now, which is the receipt time for the gateway): the signal time of a firing alert that
    carries no start time of its own (Grafana's test notifications).

    An empty tuple is a valid signal that creates no incident (count it as ignored).
    Raises InvalidSignal: EMPTY_VALUE (None or b""), TOO_LARGE (more than `max_bytes`, checked
    first), INVALID_ENCODING (not UTF-8), INVALID_JSON (syntax, NaN / Infinity, duplicate keys,
    nested deeper than 64 levels), SCHEMA_VIOLATION (not an object, or not the payload contract),
    UNMAPPABLE (valid but the mapper cannot build the incident key from it).

    The source's shapes decide the payload form (`Source.shape_of`): on `ecs_stopped` a value with
    `detail-type` or `detail` is an EventBridge event, else the `seed` shape (the documented
    signal); on `runner` a value with `workflow_job` is a GitHub webhook payload, else the
    `seed` shape.
    """
    return decode_object(source, parse_object(value, max_bytes=max_bytes), record_time)


def parse_object(value: bytes | None, *, max_bytes: int) -> dict[str, Any]:
    """The JSON object of a record value: `decode_record`'s checks before the source's own.

    Raises InvalidSignal: EMPTY_VALUE, TOO_LARGE, INVALID_ENCODING, INVALID_JSON,
    SCHEMA_VIOLATION (not an object, numbers out of range)."""
    if not value:
        raise _invalid(RejectReason.EMPTY_VALUE, "the record has no value")
    if len(value) > max_bytes:
        raise _invalid(
            RejectReason.TOO_LARGE,
            f"the value is {len(value)} bytes, more than the limit of {max_bytes} bytes",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(
            RejectReason.INVALID_ENCODING,
            f"the value is not UTF-8: invalid byte at offset {exc.start}",
        ) from None
    data = parse_json(text)
    if type(data) is not dict:
        raise _invalid(
            RejectReason.SCHEMA_VIOLATION,
            f"the value must be a JSON object, not {_JSON_TYPES.get(type(data), 'another value')}",
        )
    try:
        if _may_be_unsafe(text):
            check_json_tree(data)
    except UnsafeJson as exc:
        reason = (
            RejectReason.INVALID_JSON if exc.problem == "depth" else RejectReason.SCHEMA_VIOLATION
        )
        raise _invalid(reason, str(exc)) from None
    return data


def decode_object(
    source: Source | str, data: dict[str, Any], record_time: datetime | None = None
) -> Inputs:
    """The incident inputs of a JSON object of `source` (parsed by `parse_object`)."""
    found = source_named(source) if isinstance(source, str) else source
    if found is None:
        raise _invalid(RejectReason.UNMAPPABLE, "no decoder for this signal kind")
    shape = found.shape_of(data)
    signal = _validate(shape.wire, data, record_time or datetime.now(UTC))
    try:
        inputs = shape.to_inputs(signal)
    except InvalidSignal:
        raise
    except Exception as exc:  # a mapping defect must not block the partition: dead-letter it
        raise _invalid(
            RejectReason.UNMAPPABLE, f"the signal could not be mapped ({type(exc).__name__})"
        ) from exc
    for item in inputs:
        _refuse_credentials_in_identifiers(item)
    if inputs and all(isinstance(item, RejectedPart) for item in inputs):
        raise _invalid(RejectReason.SCHEMA_VIOLATION, rejected_parts_message(inputs))
    return inputs


def rejected_parts_message(effects: Inputs) -> str:
    """The dead-letter message of a group record's rejected parts."""
    parts = [item for item in effects if isinstance(item, RejectedPart)]
    text = "; ".join(f"part {p.index}: {p.message}" for p in parts)
    message = f"{len(parts)} invalid part(s) of a group record: {text}"
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 1] + "…"


def _refuse_credentials_in_identifiers(item: SignalEffect) -> None:
    """Identifiers (key, env, refs, correlation keys) are stored and published as they are.

    Redacting them would merge unrelated incidents under one `[REDACTED]` key, so a signal whose
    identifier looks like a credential (a token as deployId, `password=…` as a step name) is
    refused instead: SCHEMA_VIOLATION, and the message names no value. A command's identity
    fields likewise (commandId, actor id, roles, target key): redacting them would change who
    acted, or merge distinct commands under one idempotency key.
    """
    parts: list[str]
    if isinstance(item, Command):
        _refuse_credentials_in_command(item)
        return
    if isinstance(item, IncidentInput):
        parts = [item.incident_key, item.source_primary.ref, *item.correlation_keys]
        if item.env is not None:
            parts.append(item.env)
        if item.scope is not None:
            parts.append(item.scope)
    elif isinstance(item, Recovery):
        parts = [item.scope]
    elif isinstance(item, SourceTransition):
        parts = [item.incident_key]
        if item.actor is not None:
            parts.append(item.actor)
    else:
        return
    parts.extend(e.ref for e in item.evidence)
    # Each part on its own: joined, `BEARER` ending one and the next beginning would read as
    # `Bearer <token>`.
    if any_identifier_holds_credential(parts):
        raise _invalid(
            RejectReason.SCHEMA_VIOLATION,
            "an identifier field (env, ids, names, ARNs) holds a value that looks like a "
            "credential; identifiers are stored and published, so the signal is refused",
        )


def _refuse_credentials_in_command(item: Command) -> None:
    """Each identity field on its own, so that the message can name the field (not the value)."""
    fields = {
        "commandId": [item.command_id],
        "actor.id": [item.actor_id],
        "actor.roles": list(item.roles),
        "incidentKey": [item.incident_key] if item.incident_key is not None else [],
    }
    if not any_identifier_holds_credential(part for parts in fields.values() for part in parts):
        return
    named = [name for name, parts in fields.items() if any_identifier_holds_credential(parts)]
    raise _invalid(
        RejectReason.SCHEMA_VIOLATION,
        f"{', '.join(named)}: looks like a credential; a command's identity fields are stored, "
        "published and logged as they are, so the command is refused",
    )
