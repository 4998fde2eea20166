"""The CloudEvents headers (Kafka binding, binary mode) of both outbox record kinds: incident
events and command outcomes carry the same attributes, in the same order, built by one function."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ingest_worker.delivery.outbox import event_headers, result_headers

SOURCE = b"ingest-worker"
NAMES = [
    "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_tenant",
    "content-type", "tenant",
]  # fmt: skip


def test_an_event_row_gives_its_id_type_time_key_and_tenant() -> None:
    event_id = uuid.uuid4()
    row = {
        "id": event_id,
        "type": "incident.created",
        "occurred_at": "2026-01-01T12:00:00.5Z",  # the stored payload's text, as it is
        "incident_key": "deploy_status:prod:d1:2026-01-01T12:00:00Z",
        "tenant": "acme",
    }
    headers = event_headers(row, SOURCE)
    assert [name for name, _ in headers] == NAMES
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": str(event_id).encode(),
        "ce_source": SOURCE,
        "ce_type": b"incident.created",
        "ce_time": b"2026-01-01T12:00:00.5Z",
        "ce_subject": b"deploy_status:prod:d1:2026-01-01T12:00:00Z",
        "ce_tenant": b"acme",
        "content-type": b"application/json",
        "tenant": b"acme",
    }


def test_a_command_outcome_row_gives_its_outcome_as_type_and_its_time_in_utc() -> None:
    result_id = uuid.uuid4()
    row = {
        "id": result_id,
        "outcome": "rejected",
        "occurred_at": datetime(2026, 1, 1, 12, 0, tzinfo=UTC),  # a timestamptz column
        "subject": "cmd-1",
        "tenant": "default",
    }
    headers = result_headers(row, SOURCE)
    assert [name for name, _ in headers] == NAMES
    values = dict(headers)
    assert values["ce_id"] == str(result_id).encode()
    assert values["ce_type"] == b"incident.command.rejected"
    assert values["ce_time"] == b"2026-01-01T12:00:00Z"
    assert values["ce_subject"] == b"cmd-1"
    assert values["ce_tenant"] == values["tenant"] == b"default"
