"""Seed 002 generic ingestion on signals.external (SPEC §8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest_worker.core.errors import InvalidSignal, RejectReason
from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.external import SOURCE
from tests.sources import FIXTURES


def request(name: str = "edge-basic-open-no-end.json", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.update(changes)
    return data


def decode(data: dict[str, Any]) -> tuple[Any, ...]:
    return decode_record(SOURCE, json.dumps(data).encode(), max_bytes=1 << 20)


def test_the_key_is_source_type_and_source_ref() -> None:
    [item] = decode(request(sourceType="NEW_RELIC", sourceRef="a:b"))
    assert isinstance(item, IncidentInput)
    assert item.incident_key == "external:new_relic:a:b"


def test_a_resolved_request_triggers_and_recovers_the_same_key() -> None:
    trigger, recovery = decode(request("seed-basic-request.json"))
    assert isinstance(trigger, IncidentInput) and isinstance(recovery, Recovery)
    assert recovery.scope == trigger.recovery_scope == trigger.incident_key
    assert recovery.signal_time > trigger.signal_time
    assert recovery.signal_sha256 == trigger.signal_sha256


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", Severity.RED),
        ("high", Severity.RED),
        ("medium", Severity.YELLOW),
        ("low", Severity.YELLOW),
        ("info", Severity.YELLOW),
        (None, Severity.YELLOW),
    ],
)
def test_severity(severity: str | None, expected: Severity) -> None:
    [item] = decode(request(severity=severity))
    assert item.severity is expected
    assert item.classification["source_severity"] == severity


def test_source_payload_and_evidence_lite_are_evidence_pieces_not_part_of_the_primary() -> None:
    trigger, _ = decode(
        request("seed-example2-evidence-lite.json", sourcePayload={"raw": {"id": 1}})
    )
    kinds = {e.kind: e.payload for e in trigger.evidence}
    assert "evidenceLite" not in kinds["external"] and "sourcePayload" not in kinds["external"]
    assert kinds["external_source_payload"]["sourcePayload"] == {"raw": {"id": 1}}
    assert kinds["external_evidence_lite"]["metrics"][0]["name"] == "connection_pool_active"


@pytest.mark.parametrize(
    "changes",
    [
        {"sourceRef": ""},
        {"sourceRef": "x" * 513},
        {"description": "x" * 5001},
        {"title": ""},
        {"severity": "urgent"},
    ],
)
def test_seed_limits(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignal) as caught:
        decode(request(**changes))
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION


def test_a_metric_value_must_be_finite() -> None:
    data = request("seed-example2-evidence-lite.json")
    text = json.dumps(data).replace('"value": 100', '"value": 1e999')
    with pytest.raises(InvalidSignal) as caught:
        decode_record(SOURCE, text.encode(), max_bytes=1 << 20)
    assert caught.value.reason is RejectReason.SCHEMA_VIOLATION
