"""Building blocks shared by the mappers: signal payloads, evidence, titles, severities, incidents.

Pure. What leaves here for storage is redacted: titles, classification and evidence payloads
(built from the redacted signal payload).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from .canonical import canonical_json, sha256_hex, utc_timestamp
from .domain import ErrorCode, EvidenceInput, IncidentInput, Severity, SourceKind, SourceRef
from .redaction import may_contain_secrets, redact, redact_text
from .signals import MAX_NAME, MAX_REF, RunnerConclusion

#: seed 000 §1.C: a stoppedReason containing one of these words (any case) means the task failed.
ECS_FAILURE_WORDS: Final = ("error", "fail", "crash")


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


def ecs_severity(exit_code: int | None, stopped_reason: str | None) -> Severity:
    """seed 000 §1.C: RED when the exit code is non-zero (absent or null is not non-zero) or the
    stoppedReason contains error, fail or crash in any case; YELLOW otherwise."""
    if exit_code is not None and exit_code != 0:
        return Severity.RED
    reason = (stopped_reason or "").lower()
    if any(word in reason for word in ECS_FAILURE_WORDS):
        return Severity.RED
    return Severity.YELLOW


def ecs_error_code(severity: Severity) -> ErrorCode:
    return ErrorCode.ECS_TASK_FAILED if severity is Severity.RED else ErrorCode.ECS_TASK_STOPPED


def ecs_title(cluster: str, task_arn: str, exit_code: int | None) -> str:
    task_id = task_arn.rsplit("/", 1)[-1] or task_arn
    title = f"ECS task stopped in {cluster}: {task_id}"
    if exit_code:
        title += f" (exit code {exit_code})"
    return title


def build_incident(
    *,
    key: str,
    kind: SourceKind,
    severity: Severity,
    title: str,
    env: str | None,
    classification: dict[str, Any],
    source_ref: str,
    signal_time: datetime,
    correlation: Iterable[str],
    source: SignalPayload,
    extra_evidence: Iterable[EvidenceInput] = (),
) -> IncidentInput:
    """The incident input, the signal being its primary evidence (kind = source kind).

    The title and the classification are redacted; the key, refs, env and correlation keys are
    identifiers built from ids and names, kept as they are so that keys keep the seed's format.
    """
    primary = EvidenceInput(
        kind=kind.value, ref=f"{source_ref}@sha256:{source.sha256}", payload=source.payload
    )
    return IncidentInput(
        incident_key=key,
        source_kind=kind,
        severity=severity,
        title=title_text(title),
        env=env,
        classification=source.redacted(classification),
        source_primary=SourceRef(kind=kind.value, ref=source_ref),
        signal_time=signal_time,
        correlation_keys=tuple(sorted(set(correlation))),
        evidence=(primary, *extra_evidence),
        signal_sha256=source.sha256,
    )


def runner_incident(
    *,
    run_id: str,
    step_name: str,
    conclusion: RunnerConclusion,
    completed_at: datetime,
    workflow_name: str | None,
    env: str | None,
    classification: dict[str, Any],
    correlation: Iterable[str],
    source: SignalPayload,
    extra_evidence: Iterable[EvidenceInput],
) -> IncidentInput:
    """seed 000 §1.D for one step: failure / timeout → RED, cancelled → YELLOW;
    timeout → RUNNER_STEP_TIMEOUT, failure and cancelled → RUNNER_STEP_FAILED."""
    severity = Severity.YELLOW if conclusion is RunnerConclusion.CANCELLED else Severity.RED
    code = (
        ErrorCode.RUNNER_STEP_TIMEOUT
        if conclusion is RunnerConclusion.TIMEOUT
        else ErrorCode.RUNNER_STEP_FAILED
    )
    if workflow_name:
        title = f"Workflow {workflow_name} {conclusion.value}: {step_name}"
    else:
        title = f"GitHub Actions {conclusion.value}: {step_name}"
    return build_incident(
        key=f"runner:{run_id}:{step_name}:{conclusion.value}",
        kind=SourceKind.RUNNER,
        severity=severity,
        title=title,
        env=env,
        classification={
            "error_code": code.value,
            "signal_type": SourceKind.RUNNER.value,
            "run_id": run_id,
            "step_name": step_name,
            "conclusion": conclusion.value,
            "workflow_name": workflow_name,
            **classification,
        },
        source_ref=f"{run_id}:{step_name}",
        signal_time=completed_at,
        correlation=correlation,
        source=source,
        extra_evidence=extra_evidence,
    )
