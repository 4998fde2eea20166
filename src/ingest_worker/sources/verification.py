"""Post-deploy verification runs: failed and timeout open RED incidents."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.building import (
    UNKNOWN,
    SignalPayload,
    build_incident,
    evidence,
    pick,
    recovery,
)
from ingest_worker.sources.contract import Shape, Source, one
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Name,
    Ref,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
    WireModel,
)

NAME: Final = "verification"
VERIFICATION_FAILED: Final = "VERIFICATION_FAILED"
VERIFICATION_TIMEOUT: Final = "VERIFICATION_TIMEOUT"
ERROR_CODES: Final = (VERIFICATION_FAILED, VERIFICATION_TIMEOUT)


class VerificationStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"


class FailedStep(WireModel):
    id: RequiredRef
    title: Name
    error: Text | None = None


class VerificationSignal(Signal):
    """A post-deploy verification run (E65.2). Only `failed` and `timeout` create incidents."""

    runId: RequiredRef
    playbookId: RequiredRef
    playbookVersion: Ref
    env: RequiredRef
    status: VerificationStatus
    deployId: Ref | None = None
    failedSteps: Annotated[list[FailedStep], Field(max_length=MAX_ITEMS)] | None = None
    completedAt: Timestamp
    reportHash: Ref | None = None


def map_verification(signal: VerificationSignal) -> IncidentInput | None:
    """`failed` / `timeout` → a RED incident; `passed` → none.

    Key: `verification:<deployId|unknown>:<reportHash>`, the runId standing in for a missing hash.
    """
    if signal.status is VerificationStatus.PASSED:
        return None
    code = (
        VERIFICATION_TIMEOUT if signal.status is VerificationStatus.TIMEOUT else VERIFICATION_FAILED
    )
    deploy_id = signal.deployId or None
    report = signal.reportHash or signal.runId
    source = SignalPayload.of(signal)
    data = source.payload
    failed_steps = signal.failedSteps or []
    extra = []
    if failed_steps:
        extra.append(
            evidence(
                "verification_failed_steps",
                signal.runId,
                pick(data, "runId", "playbookId", "playbookVersion", "status", "failedSteps"),
                source,
            )
        )
    if signal.reportHash:
        extra.append(
            evidence(
                "verification_report",
                signal.reportHash,
                pick(data, "reportHash", "runId", "playbookId", "playbookVersion", "completedAt"),
                source,
            )
        )
    correlation = [
        f"env:{signal.env}",
        f"verification_run:{signal.runId}",
        f"playbook:{signal.playbookId}",
    ]
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    return build_incident(
        key=f"verification:{deploy_id or UNKNOWN}:{report}",
        kind=NAME,
        severity=Severity.RED,
        title=(
            f"Post-deploy verification {signal.status.value} in {signal.env}: "
            + " ".join(part for part in (signal.playbookId, signal.playbookVersion) if part)
        ),
        env=signal.env,
        classification={
            "error_code": code,
            "signal_type": NAME,
            "status": signal.status.value,
            "deploy_id": deploy_id,
            "run_id": signal.runId,
            "playbook_id": signal.playbookId,
            "playbook_version": signal.playbookVersion,
            "report_hash": signal.reportHash or None,
            "failed_step_ids": [step.id for step in failed_steps],
        },
        source_ref=signal.runId,
        signal_time=signal.completedAt,
        correlation=correlation,
        source=source,
        extra_evidence=extra,
        scope=recovery_scope(signal),
    )


def recovery_scope(signal: VerificationSignal) -> str:
    """`passed` resolves the incidents of the same deployId (or unknown) and
    playbookId."""
    return f"verification:{signal.deployId or UNKNOWN}:{signal.playbookId}"


def recovery_of(signal: VerificationSignal) -> Recovery | None:
    if signal.status is not VerificationStatus.PASSED:
        return None
    return recovery(
        kind=NAME,
        scope=recovery_scope(signal),
        source_ref=signal.runId,
        signal_time=signal.completedAt,
        source=SignalPayload.of(signal),
    )


def to_effects(signal: VerificationSignal) -> tuple[IncidentInput | Recovery, ...]:
    found = recovery_of(signal)
    return (found,) if found is not None else one(map_verification(signal))


SOURCE: Final = Source(
    name=NAME,
    topic="signals.verification",
    setting="verification",
    summary="Post-deploy verification runs.",
    error_codes=ERROR_CODES,
    shapes=(
        Shape(
            "seed",
            VerificationSignal,
            to_effects,
            schema_file="verification-signal.schema.json",
        ),
    ),
)
