"""Builders of `IncidentInput` values for store tests, independent of the signal mappers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest_worker.core.canonical import canonical_sha256
from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery, Severity, SourceRef

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def incident_input(
    key: str = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z",
    *,
    signal: str = "s1",
    severity: Severity = Severity.RED,
    at: datetime | int = 0,
    title: str | None = None,
    env: str | None = "prod",
    correlation_keys: tuple[str, ...] = ("deploy:deploy-1",),
    evidence: tuple[EvidenceInput, ...] | None = None,
    classification: dict[str, Any] | None = None,
    scope: str | None = None,
) -> IncidentInput:
    """An input for `key`; `signal` names the signal, whose sha256 is derived from every field.

    `at` is a datetime or a number of seconds after BASE_TIME.
    """
    moment = at if isinstance(at, datetime) else BASE_TIME + timedelta(seconds=at)
    if evidence is None:
        evidence = (
            EvidenceInput("deploy_status", f"{key}#{signal}", {"signal": signal}),
            EvidenceInput("deploy", "deploy-1", {"deployId": "deploy-1"}),
        )
    fields: dict[str, Any] = {
        "key": key,
        "severity": str(severity),
        "at": moment.isoformat(),
        "title": title if title is not None else f"{severity} deploy status ({signal})",
        "env": env,
        "classification": (
            classification
            if classification is not None
            else {"error_code": f"DEPLOY_STATUS_{severity}"}
        ),
        "correlation_keys": list(correlation_keys),
        "evidence": [[e.kind, e.ref, dict(e.payload)] for e in evidence],
    }
    # The signal identity covers every field, as the sha256 of a parsed signal would.
    identity = {**fields, "signal": signal, "classification": repr(fields["classification"])}
    return IncidentInput(
        incident_key=key,
        source_kind="deploy_status",
        severity=severity,
        title=fields["title"],
        env=env,
        classification=fields["classification"],
        source_primary=SourceRef("deploy_status", f"{key}#{signal}"),
        signal_time=moment,
        correlation_keys=correlation_keys,
        evidence=evidence,
        signal_sha256=canonical_sha256(identity),
        scope=scope,
    )


def recovery(
    scope: str = "deploy_status:prod:deploy-1", *, signal: str = "g1", at: datetime | int = 0
) -> Recovery:
    """A recovery signal of `scope` at `at` (seconds after BASE_TIME, or a datetime)."""
    moment = at if isinstance(at, datetime) else BASE_TIME + timedelta(seconds=at)
    sha = canonical_sha256({"scope": scope, "signal": signal, "at": moment.isoformat()})
    return Recovery(
        source_kind="deploy_status",
        scope=scope,
        signal_time=moment,
        signal_sha256=sha,
        evidence=(
            EvidenceInput("deploy_status_recovery", f"{scope}#{signal}", {"signal": signal}),
        ),
    )


def event_body_for_publish(row: Any) -> dict[str, Any]:
    """The body an `incident_events` row (Record or mapping) is published with: its payload,
    decoded whether or not a jsonb codec is set, plus `hash`."""
    payload = row["payload"]
    decoded: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else dict(payload)
    return {**decoded, "hash": row["hash"]}
