"""Incident event records as the outbox publishes them (CloudEvents binary mode), for the tests."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

SECRET_A = "whsec_" + base64.b64encode(b"A" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"B" * 24).decode()

STATUS_AFTER = {
    "incident.created": "OPEN",
    "incident.acknowledged": "ACKNOWLEDGED",
    "incident.resolved": "RESOLVED",
    "incident.updated": "OPEN",
}


def event_body(
    incident: str, seq: int, kind: str, *, severity: str = "RED", title: str = "Deploy failed",
    source: str = "deploy_status", env: str = "prod",
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": f"{incident}-evt-{seq}",
        "type": kind,
        "incident_id": incident,
        "incident_key": f"key:{incident}",
        "seq": seq,
        "occurred_at": "2026-11-23T09:00:00Z",
        "changes": {},
        "hash": "0" * 64,
        "snapshot": {
            "id": incident,
            "incident_key": f"key:{incident}",
            "title": title,
            "severity": severity,
            "status": STATUS_AFTER.get(kind, "OPEN"),
            "source_kind": source,
            "env": env,
            "last_seq": seq,
        },
    }


def event_record(
    incident: str, seq: int, kind: str, *, tenant: str | None = None, **body: Any
) -> tuple[bytes, bytes, list[tuple[str, bytes]], int]:
    """(key, value, headers, timestamp ms) of one record of the events topic."""
    value = event_body(incident, seq, kind, **body)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", value["id"].encode()),
        ("ce_source", b"ingest-worker"),
        ("ce_type", kind.encode()),
        ("ce_time", b"2026-11-23T09:00:00Z"),
        ("ce_subject", value["incident_key"].encode()),
        ("content-type", b"application/json"),
    ]
    if tenant is not None:
        headers += [("tenant", tenant.encode()), ("ce_tenant", tenant.encode())]
    return incident.encode(), json.dumps(value).encode(), headers, int(time.time() * 1000)
