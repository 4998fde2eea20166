"""Building blocks shared by the source mappers: signal payloads, evidence, titles, incidents.

Pure. What leaves here for storage is redacted: titles, classification and evidence payloads
(built from the redacted signal payload).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from ingest_worker.core.canonical import canonical_json, sha256_hex, utc_timestamp
from ingest_worker.core.redaction import may_contain_secrets, redact, redact_text
from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery, Severity, SourceRef
from ingest_worker.sources.wire import MAX_NAME, MAX_REF

#: The key part used when a deployId is missing (or empty), as the documented keys spell it.
UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True)
class SignalPayload:
    """The JSON of a parsed signal: `payload` redacted for storage, `sha256` its identity.

    `sha256` is the canonical sha256 of the unredacted JSON (`model_dump(mode="json",
    by_alias=True)`, extra fields included). `clean` tells that nothing needed redaction, so that
    values copied from the signal need no further redaction either.
    """

    payload: dict[str, Any]
    sha256: str
    clean: bool

    @classmethod
    def of(cls, signal: BaseModel) -> SignalPayload:
        data = signal.model_dump(mode="json", by_alias=True)
        text = canonical_json(data)
        if may_contain_secrets(text):
            return cls(payload=redact(data), sha256=sha256_hex(text), clean=False)
        return cls(payload=data, sha256=sha256_hex(text), clean=True)

    def redacted(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` (built from this signal's fields) redacted unless the signal is clean."""
        return value if self.clean else redact(value)

    def text(self, value: str | None) -> str | None:
        """A string taken from this signal, redacted unless the signal is clean."""
        return value if self.clean or value is None else redact_text(value)


def key_time(moment: datetime) -> str:
    """A timestamp as it appears in incident keys: UTC, `Z`, fraction only when non-zero."""
    return utc_timestamp(moment)


def pick(data: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    """The named fields of a (redacted) payload, `null` when absent."""
    return {name: data.get(name) for name in fields}


def evidence(kind: str, ref: str, payload: dict[str, Any], source: SignalPayload) -> EvidenceInput:
    """Additional evidence derived from a signal; `payload` must come from `source.payload`.

    The ref `<ref>@sha256:<signal sha256>` names the signal it comes from: a redelivered signal
    gives the same evidence (deduplicated by the store), a different signal new evidence.
    """
    return EvidenceInput(kind=kind, ref=f"{ref}@sha256:{source.sha256}", payload=payload)


def extra_text(signal: BaseModel, name: str) -> str | None:
    """A non-empty string extra field (e.g. `deployId` on an ECS or runner signal), else None."""
    value = (signal.model_extra or {}).get(name)
    if isinstance(value, str) and 0 < len(value) <= MAX_REF:
        return value
    return None


def title_text(text: str) -> str:
    """A redacted title of at most 500 characters."""
    text = redact_text(text)
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def build_incident(
    *,
    key: str,
    kind: str,
    severity: Severity,
    title: str,
    env: str | None,
    classification: dict[str, Any],
    source_ref: str,
    signal_time: datetime,
    correlation: Iterable[str],
    source: SignalPayload,
    extra_evidence: Iterable[EvidenceInput] = (),
    scope: str | None = None,
) -> IncidentInput:
    """The incident input, the signal being its primary evidence (kind = source kind).

    `scope`: the recovery scope the incident belongs to; None: its key.

    The title and the classification are redacted; the key, refs, env and correlation keys are
    identifiers built from ids and names, kept as they are so that keys keep their documented
    format.
    """
    primary = EvidenceInput(
        kind=kind, ref=f"{source_ref}@sha256:{source.sha256}", payload=source.payload
    )
    return IncidentInput(
        incident_key=key,
        source_kind=kind,
        severity=severity,
        title=title_text(title),
        env=env,
        classification=source.redacted(classification),
        source_primary=SourceRef(kind=kind, ref=source_ref),
        signal_time=signal_time,
        correlation_keys=tuple(sorted(set(correlation))),
        evidence=(primary, *extra_evidence),
        signal_sha256=source.sha256,
        scope=scope,
    )


def recovery(
    *, kind: str, scope: str, source_ref: str, signal_time: datetime, source: SignalPayload
) -> Recovery:
    """A recovery signal of `scope`, the signal (redacted) being its evidence."""
    primary = EvidenceInput(
        kind=f"{kind}_recovery", ref=f"{source_ref}@sha256:{source.sha256}", payload=source.payload
    )
    return Recovery(
        source_kind=kind,
        scope=scope,
        signal_time=signal_time,
        signal_sha256=source.sha256,
        evidence=(primary,),
    )
