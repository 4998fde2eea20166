"""Canonical JSON, hashes, deterministic ids and timestamps: the byte-level contract of the store.

Everything that is hashed or used as an identity goes through here so that the same input gives
the same bytes on every machine and every run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import orjson

#: Namespace of every deterministic id (uuid5). Never change it: ids are a public contract.
ID_NAMESPACE = uuid.UUID("6f1c2a52-3d4b-5e8f-9a0b-1c2d3e4f5a6b")

_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def reference_json(value: Any) -> str:
    """Canonical JSON with Python's json module, for values orjson refuses (see canonical_json)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_json(value: Any) -> str:
    """Canonical JSON: keys sorted by code point, no whitespace, UTF-8 kept as is.

    Produced by orjson (`OPT_SORT_KEYS`). For every value without floats in exponent notation
    this is byte for byte `json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` (property-tested). Floats are written in orjson's shortest round-trip
    form, which differs from Python's repr for some small numbers (`1e-7`, `0.000015` where
    Python writes `1e-07`, `1.5e-05`); signals rarely carry floats. Values orjson
    cannot encode (integers beyond 64 bits, non-string keys) use `reference_json`. Numbers must
    be finite: the decoder refuses NaN and infinities before anything is hashed.
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return reference_json(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_sha256(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of `value`."""
    return sha256_hex(canonical_json(value))


_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_SAFE = uuid.SafeUUID.unknown


def _uuid5(name: str) -> uuid.UUID:
    """`uuid.uuid5(ID_NAMESPACE, name)` without the constructor's argument checks (hot path)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF000 << 64)) | (5 << 76)  # version 5
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    result = object.__new__(uuid.UUID)
    object.__setattr__(result, "int", value)
    object.__setattr__(result, "is_safe", _SAFE)
    return result


#: Bounded: a long-lived worker sees an unbounded number of keys, and the hot ones recur.
@functools.lru_cache(maxsize=16_384)
def incident_id(incident_key: str) -> uuid.UUID:
    """The incident id: a pure function of its key (uuid5 in ID_NAMESPACE of `incident:<key>`)."""
    return _uuid5(f"incident:{incident_key}")


def event_id(incident: uuid.UUID, seq: int) -> uuid.UUID:
    """The id of event number `seq` of an incident (uuid5 of `event:<incident id>:<seq>`)."""
    return _uuid5(f"event:{incident}:{seq}")


def evidence_sha256(incident: uuid.UUID, kind: str, ref: str) -> str:
    """Evidence identity: sha256 of canonical `{incident_id, kind, ref}`.

    Formatted directly (it is on the hot path); equal to canonical_sha256 of that mapping.
    """
    text = b'{"incident_id":"%s","kind":%s,"ref":%s}' % (
        str(incident).encode(),
        orjson.dumps(kind),
        orjson.dumps(ref),
    )
    return hashlib.sha256(text).hexdigest()


def utc_timestamp(moment: datetime) -> str:
    """Render an aware datetime canonically: UTC, `Z`, fractional seconds only when non-zero.

    `2024-01-01T01:00:00+01:00` and `2024-01-01T00:00:00Z` both give `2024-01-01T00:00:00Z`.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("timestamp must carry a UTC offset")
    utc = moment - offset if offset else moment
    text = utc.replace(tzinfo=None).isoformat()
    if utc.microsecond:
        text = text.rstrip("0")
    return text + "Z"
