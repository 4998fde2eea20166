"""Where a record's tenant comes from (pure), the tenant's ids, and the bounded metric label."""

from __future__ import annotations

import pytest

from ingest_worker.core.canonical import incident_id
from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.incident import episode_id
from ingest_worker.core.tenants import TENANT_PATTERN, InvalidTenant, check_tenant
from ingest_worker.delivery.batches import BatchReport, PreparedBatch, SignalRecord
from ingest_worker.delivery.tenancy import record_tenant, split_topic, topic_pattern
from ingest_worker.metrics import Metrics, TenantLabels
from ingest_worker.store.commands import result_id

KNOWN = {"signals.deploy-status", "incident.commands"}


@pytest.mark.parametrize("value", ["default", "acme", "a", "0-team", "a" * 63])
def test_valid_tenant_ids(value: str) -> None:
    assert TENANT_PATTERN.fullmatch(value) and check_tenant(value) == value


@pytest.mark.parametrize("value", ["", "Acme", "-acme", "a" * 64, "a.b", "a_b", "acme\n", "é"])
def test_invalid_tenant_ids_are_refused_without_echoing_them(value: str) -> None:
    assert not TENANT_PATTERN.fullmatch(value)
    with pytest.raises(InvalidTenant) as raised:
        check_tenant(value)
    assert value not in str(raised.value) or value == ""


def test_the_header_names_the_tenant_and_absent_or_empty_means_default() -> None:
    topic = "signals.deploy-status"
    assert record_tenant(topic, (), None) == ("default", topic)
    assert record_tenant(topic, (("tenant", b""),), None) == ("default", topic)
    assert record_tenant(topic, (("traceparent", b"x"), ("tenant", b"acme")), None) == (
        "acme",
        topic,
    )


@pytest.mark.parametrize(
    "headers",
    [
        (("tenant", b"ACME"),),
        (("tenant", b"\xff"),),
        (("tenant", b"a" * 64),),
        (("tenant", b"acme"), ("tenant", b"globex")),
    ],
)
def test_a_malformed_or_ambiguous_tenant_header_is_invalid_tenant(
    headers: tuple[tuple[str, bytes], ...],
) -> None:
    with pytest.raises(InvalidSignal) as raised:
        record_tenant("signals.deploy-status", headers, None)
    assert raised.value.reason.value == "invalid_tenant"


def test_the_topic_prefix_names_the_tenant_in_prefix_mode() -> None:
    assert split_topic("signals.deploy-status", KNOWN) == ("default", "signals.deploy-status")
    assert split_topic("acme.signals.deploy-status", KNOWN) == ("acme", "signals.deploy-status")
    assert split_topic("acme.other", KNOWN) is None
    assert split_topic("Acme.signals.deploy-status", KNOWN) is None
    assert record_tenant("acme.incident.commands", (("tenant", b"acme"),), KNOWN) == (
        "acme",
        "incident.commands",
    )
    with pytest.raises(InvalidSignal):
        record_tenant("acme.incident.commands", (("tenant", b"globex"),), KNOWN)


def test_the_subscription_pattern_matches_bare_and_prefixed_configured_topics_only() -> None:
    import re

    pattern = re.compile(topic_pattern(KNOWN))
    assert pattern.match("signals.deploy-status")
    assert pattern.match("acme-2.signals.deploy-status")
    assert not pattern.match("signals.deploy-statusX")
    assert not pattern.match("ACME.signals.deploy-status")
    assert not pattern.match("a.b.signals.deploy-status")
    assert not pattern.match("signalsXdeploy-status")


def test_the_default_tenant_keeps_its_ids_and_others_get_their_own() -> None:
    assert episode_id("k", 1) == episode_id("k", 1, "default") == incident_id("k")
    assert episode_id("k", 2) == incident_id("k#2")
    assert episode_id("k", 1, "acme") == incident_id("acme/k")
    assert episode_id("k", 3, "acme") == incident_id("acme/k#3")
    assert result_id("c", "sha") == result_id("c", "sha", "default") != result_id("c", "sha", "a")


def test_the_tenant_label_is_bounded() -> None:
    metrics = Metrics()
    labels = TenantLabels(metrics, limit=2)
    records = [SignalRecord("t", 0, i, None, b"{}") for i in range(4)]
    prepared = PreparedBatch(records, [], [], [0, 1, 2, 3], ["a", "b", "c", "default"])
    labels.count(prepared, BatchReport(records=4))
    samples = {
        s.labels["tenant"]: s.value
        for s in metrics.tenant_signals.collect()[0].samples
        if s.name.endswith("_total")
    }
    assert samples == {"a": 1, "b": 1, "other": 2}
