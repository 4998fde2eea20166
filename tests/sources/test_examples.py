"""Golden tests: every case of every source, through the real `decode_record`, against the
expected normalized output beside it.

A new case fails once and writes its `.expected.json` for review; after an intended change,
`make golden` (`pytest tests/sources --force-regen`) rewrites them. Reviewers read the expected
files, not this code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_regressions.file_regression import FileRegressionFixture

from ingest_worker.core.canonical import utc_timestamp
from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import (
    IncidentInput,
    Recovery,
    RejectedPart,
    SignalEffect,
    SourceTransition,
)
from ingest_worker.sources.decode import decode_record
from ingest_worker.sources.registry import source_named
from tests.sources import RECORD_TIME, case_files

MAX_BYTES = 1 << 20


def _evidence(item: SignalEffect) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "ref": e.ref, "payload": dict(e.payload)} for e in item.evidence]


def normalized(item: SignalEffect) -> dict[str, Any]:
    """A decoded effect as stored and published: JSON-ready, every field."""
    if isinstance(item, Recovery):
        return {
            "recovery": {
                "source_kind": item.source_kind,
                "scope": item.scope,
                "signal_time": utc_timestamp(item.signal_time),
                "signal_sha256": item.signal_sha256,
                "evidence": _evidence(item),
            }
        }
    if isinstance(item, SourceTransition):
        return {
            "transition": {
                "incident_key": item.incident_key,
                "source_kind": item.source_kind,
                "verb": item.verb,
                "signal_time": utc_timestamp(item.signal_time),
                "signal_sha256": item.signal_sha256,
                "actor": item.actor,
                "note": item.note,
                "evidence": _evidence(item),
            }
        }
    if isinstance(item, RejectedPart):
        return {"rejected_part": {"index": item.index, "message": item.message}}
    assert isinstance(item, IncidentInput)
    return {
        "incident_key": item.incident_key,
        "source_kind": item.source_kind,
        "severity": item.severity.value,
        "title": item.title,
        "env": item.env,
        "classification": dict(item.classification),
        "source_primary": item.source_primary.to_json(),
        "signal_time": utc_timestamp(item.signal_time),
        "correlation_keys": list(item.correlation_keys),
        "evidence": _evidence(item),
        "signal_sha256": item.signal_sha256,
        "scope": item.recovery_scope,
    }


def expected_output(source_name: str, value: bytes) -> dict[str, Any]:
    source = source_named(source_name)
    assert source is not None, f"fixture folder {source_name} has no registered source"
    try:
        inputs = decode_record(source, value, max_bytes=MAX_BYTES, record_time=RECORD_TIME)
    except InvalidSignal as exc:
        return {"rejected": exc.reason.value, "message": exc.message}
    return {"incidents": [normalized(item) for item in inputs]}


def _case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("case", case_files(), ids=_case_id)
def test_case_maps_to_its_expected_output(
    case: Path, file_regression: FileRegressionFixture
) -> None:
    output = expected_output(case.parent.name, case.read_bytes())
    text = json.dumps(output, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    file_regression.check(
        text, fullpath=case.with_name(case.stem + ".expected.json"), encoding="utf-8"
    )


@pytest.mark.parametrize("case", case_files(), ids=_case_id)
def test_case_maps_identically_every_time(case: Path) -> None:
    value = case.read_bytes()
    assert expected_output(case.parent.name, value) == expected_output(case.parent.name, value)
