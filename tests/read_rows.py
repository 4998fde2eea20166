"""Rows for read-side tests, written straight into the tables (as the tables' owner).

The read module's answers depend on the rows only, not on how the worker wrote them; writing
them directly lets a test place every value (times, statuses, tenants with identical keys)
exactly where a filter or a page boundary needs it. The HTTP tests go through the real worker.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Row:
    """One incident; `minute` places its times (last seen at BASE + minute)."""

    tenant: str
    key: str
    minute: int
    status: str = "OPEN"
    severity: str = "RED"
    source: str = "deploy_status"
    env: str | None = "prod"
    title: str = "Deploy failed"
    correlation_keys: list[str] = field(default_factory=list)
    episode: int = 1
    events: int = 1
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def last_seen(self) -> datetime:
        return BASE + timedelta(minutes=self.minute)


INSERT_INCIDENT = """
INSERT INTO incidents (tenant, id, incident_key, episode, source_kind, severity, status, title,
    env, classification, source_primary, correlation_keys, first_seen_at, last_seen_at,
    occurrence_count, last_seq, lead_signal_at, lead_signal_sha256, created_at, updated_at,
    recovery_scope)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '{"error_code": "DEPLOY_FAILED"}', '{"kind": "x",
    "ref": "y"}', $10, $11, $11, 1, $12, $11, $13, $14, $15, $3)
"""
INSERT_EVENT = """
INSERT INTO incident_events (tenant, id, incident_id, seq, type, occurred_at, recorded_at,
    payload, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)
"""
INSERT_EVIDENCE = """
INSERT INTO incident_evidence (tenant, incident_id, kind, ref, sha256, payload, observed_at)
VALUES ($1, $2, 'deploy', $3, $4, '{"detail": "kept"}', $5)
"""


def event_body(row: Row, seq: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(row.id, str(seq))),
        "type": "incident.created" if seq == 1 else "incident.updated",
        "incident_id": str(row.id),
        "incident_key": row.key,
        "seq": seq,
        "tenant": row.tenant,
        "snapshot": {"status": row.status, "severity": row.severity},
        "changes": {},
        "cause": {"kind": "signal", "signal_sha256": sha(f"{row.key}{seq}")},
    }


async def insert(conn: asyncpg.Connection | Any, rows: list[Row], *, recorded: datetime) -> None:
    """The incidents with one evidence row each and `events` events each, recorded at
    `recorded` + one microsecond per event in list order."""
    incidents, evidence, events = [], [], []
    tick = 0
    for row in rows:
        created = BASE + timedelta(minutes=row.minute, seconds=1)
        updated = BASE + timedelta(minutes=row.minute, seconds=2)
        incidents.append((
            row.tenant, row.id, row.key, row.episode, row.source, row.severity, row.status,
            row.title, row.env, row.correlation_keys, row.last_seen, row.events, sha(row.key),
            created, updated,
        ))  # fmt: skip
        evidence.append((row.tenant, row.id, f"ref-{row.key}", sha(f"ev{row.id}"), row.last_seen))
        previous = "0" * 64
        for seq in range(1, row.events + 1):
            body = event_body(row, seq)
            digest = sha(json.dumps(body) + previous)
            events.append((
                row.tenant, uuid.UUID(body["id"]), row.id, seq, body["type"], row.last_seen,
                recorded + timedelta(microseconds=tick), json.dumps(body), previous, digest,
            ))  # fmt: skip
            previous, tick = digest, tick + 1
    await conn.executemany(INSERT_INCIDENT, incidents)
    await conn.executemany(INSERT_EVIDENCE, evidence)
    await conn.executemany(INSERT_EVENT, events)
