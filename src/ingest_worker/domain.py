"""Domain values of the ingestion core: what a mapped signal asks the store to do.

Pure and immutable. Nothing here imports a driver or a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class SourceKind(StrEnum):
    """The four signal families of seed 000 §1 (also the prefix of their incident keys)."""

    DEPLOY_STATUS = "deploy_status"
    VERIFICATION = "verification"
    ECS_STOPPED = "ecs_stopped"
    RUNNER = "runner"


class Severity(StrEnum):
    """Incident severity. Ingestion may raise it, never lower it."""

    YELLOW = "YELLOW"
    RED = "RED"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.YELLOW: 1, Severity.RED: 2}


class ErrorCode(StrEnum):
    """The eight error codes of seed 000."""

    DEPLOY_STATUS_YELLOW = "DEPLOY_STATUS_YELLOW"
    DEPLOY_STATUS_RED = "DEPLOY_STATUS_RED"
    VERIFICATION_FAILED = "VERIFICATION_FAILED"
    VERIFICATION_TIMEOUT = "VERIFICATION_TIMEOUT"
    ECS_TASK_STOPPED = "ECS_TASK_STOPPED"
    ECS_TASK_FAILED = "ECS_TASK_FAILED"
    RUNNER_STEP_FAILED = "RUNNER_STEP_FAILED"
    RUNNER_STEP_TIMEOUT = "RUNNER_STEP_TIMEOUT"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A pointer to where something came from: `{kind, ref}`."""

    kind: str
    ref: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "ref": self.ref}


@dataclass(frozen=True, slots=True)
class EvidenceInput:
    """One piece of evidence for an incident. `payload` is JSON-ready and already redacted."""

    kind: str
    ref: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentInput:
    """What one signal asks the store to create or update.

    `signal_sha256` identifies the signal (sha256 of the canonical JSON of the parsed signal):
    the store applies an input with an already-seen `(incident_key, signal_sha256)` at most once.
    `signal_time` is timezone-aware UTC.
    """

    incident_key: str
    source_kind: SourceKind
    severity: Severity
    title: str
    env: str | None
    classification: Mapping[str, Any]
    source_primary: SourceRef
    signal_time: datetime
    correlation_keys: tuple[str, ...]
    evidence: tuple[EvidenceInput, ...]
    signal_sha256: str
