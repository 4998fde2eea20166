"""Deploy status changes: RED and YELLOW open incidents, GREEN creates none."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import Field

from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.building import (
    UNKNOWN,
    SignalPayload,
    build_incident,
    evidence,
    key_time,
    pick,
    recovery,
)
from ingest_worker.sources.contract import Shape, Source, one
from ingest_worker.sources.wire import (
    MAX_ITEMS,
    Ref,
    RequiredRef,
    Signal,
    Text,
    Timestamp,
    WireModel,
)

NAME: Final = "deploy_status"
DEPLOY_STATUS_YELLOW: Final = "DEPLOY_STATUS_YELLOW"
DEPLOY_STATUS_RED: Final = "DEPLOY_STATUS_RED"
ERROR_CODES: Final = (DEPLOY_STATUS_YELLOW, DEPLOY_STATUS_RED)


class DeployStatus(StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


class StatusReason(WireModel):
    code: RequiredRef
    severity: Ref
    message: Text


class DeployStatusSignal(Signal):
    """A deploy status change (E65.1). GREEN creates no incident."""

    env: RequiredRef
    status: DeployStatus
    changedAt: Timestamp
    signals: dict[str, Any]
    reasons: Annotated[list[StatusReason], Field(max_length=MAX_ITEMS)]
    deployId: Ref | None = None


def map_deploy_status(signal: DeployStatusSignal) -> IncidentInput | None:
    """GREEN → no incident; YELLOW / RED → an incident of that severity.

    Key: `deploy_status:<env>:<deployId|unknown>:<changedAt>`.
    """
    if signal.status is DeployStatus.GREEN:
        return None
    severity = Severity.RED if signal.status is DeployStatus.RED else Severity.YELLOW
    code = DEPLOY_STATUS_RED if severity is Severity.RED else DEPLOY_STATUS_YELLOW
    deploy_id = signal.deployId or None
    changed_at = key_time(signal.changedAt)
    source = SignalPayload.of(signal)
    data = source.payload
    snapshot = pick(data, "env", "status", "changedAt", "deployId", "signals", "reasons")
    title = f"Deploy status {signal.status.value} in {signal.env}"
    if deploy_id:
        title += f" (deploy {deploy_id})"
    classification: dict[str, Any] = {
        "error_code": code,
        "signal_type": NAME,
        "status": signal.status.value,
        "deploy_id": deploy_id,
        "reason_codes": [reason.code for reason in signal.reasons],
    }
    correlation = [f"env:{signal.env}"]
    if deploy_id:
        correlation.append(f"deploy:{deploy_id}")
    source_ref = f"{signal.env}:{deploy_id or UNKNOWN}:{changed_at}"
    return build_incident(
        key=f"deploy_status:{source_ref}",
        kind=NAME,
        severity=severity,
        title=title,
        env=signal.env,
        classification=classification,
        source_ref=source_ref,
        signal_time=signal.changedAt,
        correlation=correlation,
        source=source,
        extra_evidence=[
            evidence("deploy_status_snapshot", f"{signal.env}@{changed_at}", snapshot, source),
        ],
        scope=recovery_scope(signal),
    )


def recovery_scope(signal: DeployStatusSignal) -> str:
    """GREEN resolves the incidents of the same env and deployId (a missing
    deployId matches only `unknown`)."""
    return f"deploy_status:{signal.env}:{signal.deployId or UNKNOWN}"


def recovery_of(signal: DeployStatusSignal) -> Recovery | None:
    """GREEN → the recovery of its env and deploy; other statuses → None."""
    if signal.status is not DeployStatus.GREEN:
        return None
    changed_at = key_time(signal.changedAt)
    return recovery(
        kind=NAME,
        scope=recovery_scope(signal),
        source_ref=f"{signal.env}:{signal.deployId or UNKNOWN}:{changed_at}",
        signal_time=signal.changedAt,
        source=SignalPayload.of(signal),
    )


def to_effects(signal: DeployStatusSignal) -> tuple[IncidentInput | Recovery, ...]:
    found = recovery_of(signal)
    return (found,) if found is not None else one(map_deploy_status(signal))


SOURCE: Final = Source(
    name=NAME,
    topic="signals.deploy-status",
    setting="deploy_status",
    summary="Deploy status changes.",
    error_codes=ERROR_CODES,
    shapes=(
        Shape(
            "seed",
            DeployStatusSignal,
            to_effects,
            schema_file="deploy-status-signal.schema.json",
        ),
    ),
)
