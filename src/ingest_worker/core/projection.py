"""The incident projection: an order-independent fold of signals into one incident row."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ingest_worker.core import incident as aggregate
from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.lifecycle import Verb
from ingest_worker.core.values import IncidentInput

if TYPE_CHECKING:
    from ingest_worker.core.incident import Status


#: Values of the lifecycle columns in a snapshot written before they existed.
def lifecycle_defaults(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """`snapshot` with the lifecycle fields an event written before migration 0002 lacks."""
    defaults: dict[str, Any] = {
        "episode": 1,
        "previous_incident_id": None,
        "recovery_scope": snapshot.get("incident_key"),
        "acknowledged_at": None,
        "mitigated_at": None,
        "resolved_at": None,
        "closed_at": None,
        "resolved_by": None,
        "reopen_count": 0,
    }
    return {**defaults, **snapshot}


_SEVERITY_RANK = {"YELLOW": 1, "RED": 2}
_SCALARS = frozenset({str, int, bool, type(None)})


def json_value(value: Any) -> Any:
    """`value` as plain JSON data that survives a jsonb round trip unchanged.

    Mappings become dicts, tuples lists. Floats that jsonb would print differently from
    Python are normalized: -0.0 becomes 0.0, and integral floats that Python writes with an
    exponent (>= 1e16) become the integer jsonb would print. NaN and infinities are refused
    (ValueError), as in canonical_json.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a JSON number: {value!r}")
        if value == 0:
            return 0.0
        text = repr(value)
        if "e" in text and value.is_integer():
            return int(Decimal(text))  # jsonb keeps the decimal value of the text: 1e+16 → 10**16
        return value
    if isinstance(value, Mapping):
        if all(type(k) is str and type(v) in _SCALARS for k, v in value.items()):
            return dict(value)  # the common flat case, without recursion
        return {_json_key(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    raise TypeError(f"not JSON data: {type(value).__name__}")


def _json_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
    return key


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("signal_time must carry a UTC offset")
    return moment.astimezone(UTC)


_TIMESTAMPS: dict[datetime, str] = {}


#: Entries of the timestamp memo before it starts over: bounded, as the instants never end.
TIMESTAMP_MEMO_SIZE = 16_384


def timestamp_text(moment: datetime) -> str:
    """utc_timestamp, memoized: the same few instants recur in every snapshot of an incident."""
    text = _TIMESTAMPS.get(moment)
    if text is None:
        if len(_TIMESTAMPS) >= TIMESTAMP_MEMO_SIZE:
            _TIMESTAMPS.clear()
        text = _TIMESTAMPS[moment] = utc_timestamp(moment)
    return text


@dataclass(frozen=True, slots=True)
class IncidentState:
    """An incident: its `incidents` row without the wall-clock columns (created_at, updated_at)."""

    id: uuid.UUID
    incident_key: str
    source_kind: str
    severity: str
    status: Status
    title: str
    env: str | None
    classification: dict[str, Any]
    source_primary: dict[str, Any]
    correlation_keys: tuple[str, ...]
    first_seen_at: datetime
    last_seen_at: datetime
    occurrence_count: int
    last_seq: int
    lead_signal_at: datetime
    lead_signal_sha256: str
    episode: int = 1
    previous_incident_id: str | None = None
    recovery_scope: str = ""
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    resolved_by: str | None = None
    reopen_count: int = 0

    @property
    def lead(self) -> tuple[int, datetime, str]:
        """The rank of the lead signal: the greatest one supplies the descriptive columns."""
        return (_SEVERITY_RANK[self.severity], self.lead_signal_at, self.lead_signal_sha256)

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON data (timestamps as canonical UTC strings): the event snapshot."""
        return {
            "id": str(self.id),
            "incident_key": self.incident_key,
            "source_kind": self.source_kind,
            "severity": self.severity,
            "status": str(self.status),  # the plain string, as JSON carries it
            "title": self.title,
            "env": self.env,
            "classification": self.classification,
            "source_primary": self.source_primary,
            "correlation_keys": list(self.correlation_keys),
            "first_seen_at": timestamp_text(self.first_seen_at),
            "last_seen_at": timestamp_text(self.last_seen_at),
            "occurrence_count": self.occurrence_count,
            "last_seq": self.last_seq,
            "lead_signal_at": timestamp_text(self.lead_signal_at),
            "lead_signal_sha256": self.lead_signal_sha256,
            "episode": self.episode,
            "previous_incident_id": self.previous_incident_id,
            "recovery_scope": self.recovery_scope,
            "acknowledged_at": _optional_time(self.acknowledged_at),
            "mitigated_at": _optional_time(self.mitigated_at),
            "resolved_at": _optional_time(self.resolved_at),
            "closed_at": _optional_time(self.closed_at),
            "resolved_by": self.resolved_by,
            "reopen_count": self.reopen_count,
        }


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else timestamp_text(moment)


#: Snapshot keys, in column order.
SNAPSHOT_FIELDS: tuple[str, ...] = tuple(IncidentState.__dataclass_fields__)


def signal_lead(signal: IncidentInput) -> tuple[int, datetime, str]:
    return (_SEVERITY_RANK[str(signal.severity)], _utc(signal.signal_time), signal.signal_sha256)


def start(
    signal: IncidentInput,
    incident: uuid.UUID,
    *,
    episode: int = 1,
    previous: uuid.UUID | None = None,
) -> IncidentState:
    """The state after the first signal of an incident (episode `episode` of its key)."""
    at = _utc(signal.signal_time)
    return IncidentState(
        id=incident,
        incident_key=signal.incident_key,
        source_kind=str(signal.source_kind),
        severity=str(signal.severity),
        status=aggregate.Status.OPEN,
        title=signal.title,
        env=signal.env,
        classification=json_value(signal.classification),
        source_primary=json_value(signal.source_primary.to_json()),
        correlation_keys=tuple(sorted(set(signal.correlation_keys))),
        first_seen_at=at,
        last_seen_at=at,
        occurrence_count=1,
        last_seq=1,
        lead_signal_at=at,
        lead_signal_sha256=signal.signal_sha256,
        episode=episode,
        previous_incident_id=None if previous is None else str(previous),
        recovery_scope=signal.recovery_scope,
    )


def advance(state: IncidentState, signal: IncidentInput) -> IncidentState:
    """The state after one more (new) signal of the same incident.

    Commutative and associative over signals: count + 1, min/max seen times, sorted union of
    correlation keys, and the descriptive columns of the lead signal (greatest severity, then
    latest signal time, then greatest signal sha256). Severity is the lead's, hence never lowered.
    """
    if signal.incident_key != state.incident_key:
        raise ValueError(f"signal for {signal.incident_key!r} applied to {state.incident_key!r}")
    at = _utc(signal.signal_time)
    lead = state if state.lead >= signal_lead(signal) else start(signal, state.id)
    keys = state.correlation_keys
    if not set(signal.correlation_keys) <= set(keys):
        keys = tuple(sorted(set(keys).union(signal.correlation_keys)))
    return IncidentState(
        id=state.id,
        incident_key=state.incident_key,
        source_kind=lead.source_kind,
        severity=lead.severity,
        status=state.status,
        title=lead.title,
        env=lead.env,
        classification=lead.classification,
        source_primary=lead.source_primary,
        correlation_keys=keys,
        first_seen_at=min(state.first_seen_at, at),
        last_seen_at=max(state.last_seen_at, at),
        occurrence_count=state.occurrence_count + 1,
        last_seq=state.last_seq + 1,
        lead_signal_at=lead.lead_signal_at,
        lead_signal_sha256=lead.lead_signal_sha256,
        episode=state.episode,
        previous_incident_id=state.previous_incident_id,
        recovery_scope=state.recovery_scope,
        acknowledged_at=state.acknowledged_at,
        mitigated_at=state.mitigated_at,
        resolved_at=state.resolved_at,
        closed_at=state.closed_at,
        resolved_by=state.resolved_by,
        reopen_count=state.reopen_count,
    )


def after_verb(
    state: IncidentState, verb: Verb, status: Status, at: datetime, severity: str | None
) -> IncidentState:
    """The state after an applied command or source verb: its status, and the lifecycle
    columns the verb sets at `at` (the command's `issuedAt`, the source's event time)."""
    after = replace(state, status=status, last_seq=state.last_seq + 1)
    if verb is Verb.ACKNOWLEDGE and state.acknowledged_at is None:
        after = replace(after, acknowledged_at=at)
    elif verb is Verb.MARK_MITIGATED:
        after = replace(after, mitigated_at=at)
    elif verb is Verb.RESOLVE:
        after = replace(after, resolved_at=at, resolved_by="command")
    elif verb is Verb.REOPEN:
        after = replace(
            after, resolved_at=None, resolved_by=None, closed_at=None,
            reopen_count=state.reopen_count + 1,
        )  # fmt: skip
    elif verb in (Verb.CLOSE, Verb.CANCEL):
        after = replace(after, closed_at=at)
    elif verb is Verb.CHANGE_SEVERITY and severity is not None:
        after = replace(after, severity=severity)
    return after
