"""The committed AsyncAPI document is exactly what the application generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest_worker.service.asyncapi import asyncapi_document
from ingest_worker.service.config import Settings
from ingest_worker.sources.registry import SOURCES

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    return Settings()


def test_committed_asyncapi_document_matches_the_application(default_settings: Settings) -> None:
    generated = json.dumps(asyncapi_document(default_settings), indent=2, sort_keys=True) + "\n"
    assert DOCUMENT.read_text(encoding="utf-8") == generated, (
        "docs/asyncapi.json is stale: run `make asyncapi` and commit the result"
    )


def test_every_consumed_and_produced_topic_has_a_channel_with_a_payload(
    default_settings: Settings,
) -> None:
    document = asyncapi_document(default_settings)
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {
        *(source.topic for source in SOURCES),
        "signals.dlq", "incident.events", "incident.commands", "incident.command-results",
    }  # fmt: skip
    assert {"signals.deploy-status", "signals.alertmanager", "signals.pagerduty"} <= addresses
    messages = document["components"]["messages"]
    for message in messages.values():
        assert message["payload"], message
    ecs = next(m for name, m in messages.items() if "signals.ecs" in name)
    assert len(ecs["payload"]["oneOf"]) == 2  # the seed shape and the AWS EventBridge event
    events = next(m for name, m in messages.items() if "incident.events" in name)
    assert "ce_id" in events["headers"]["properties"]
