"""The Kafka value of an event is its stored body plus `hash` and `tenant`, and readers can
verify the hash (over the body without those two)."""

from __future__ import annotations

import json

import pytest

from ingest_worker.core.events import event_hash
from ingest_worker.delivery.outbox import event_value


@pytest.mark.parametrize("tenant", ["default", "acme-2"])
def test_event_value_is_the_stored_body_with_the_hash_and_the_hash_verifies(tenant: str) -> None:
    payload = {"id": "e1", "seq": 2, "prev_hash": "0" * 64, "snapshot": {"title": 'é "x"'}}
    digest = event_hash(payload, payload["prev_hash"])
    # PostgreSQL prints jsonb with spaces and its own key order: any valid JSON text works.
    stored_text = (
        '{"id": "e1", "seq": 2, "snapshot": {"title": "é \\"x\\""}, "prev_hash": "'
        + "0" * 64
        + '"}'
    )
    body = json.loads(event_value(stored_text, digest, tenant))
    assert body.pop("hash") == digest
    assert body.pop("tenant") == tenant
    assert body == payload
    assert event_hash(body, body["prev_hash"]) == digest


@pytest.mark.parametrize("text", ["{}", "[]", ""])
def test_event_value_refuses_anything_but_a_non_empty_object(text: str) -> None:
    with pytest.raises(ValueError, match="non-empty JSON object"):
        event_value(text, "0" * 64, "default")
