"""The alerting rules and the dashboard, read offline (promtool itself runs in `make interop`)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    DASHBOARD,
    RULES,
    RUNBOOK,
    dashboard_panels,
    dashboard_queries,
    grafana_to_promql,
    load_dashboard,
    load_rules,
    metric_names,
)

RUNBOOK_BASE = "https://github.com/ingest-worker/ingest-worker/blob/main/deploy/RUNBOOK.md#"
ALERTS = {
    "IngestConsumerLagGrowing": "ingest_consumer_lag",
    "IngestDeadLettersAppearing": "ingest_dead_letters_total",
    "IngestOutboxBacklogGrowing": "ingest_outbox_backlog",
    "IngestReplicaNotReady": "ingest_ready",
    "IngestTransientFaultsPersisting": "ingest_errors_total",
    "IngestGatewayAnswering5xx": "ingest_gateway_requests_total",
    "IngestNotificationSubscriptionPaused": "ingest_notify_paused",
}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_exists_with_severity_summary_description_and_runbook() -> None:
    rules = {rule["alert"]: rule for rule in load_rules()}
    assert set(rules) == set(ALERTS)
    anchors = github_anchors(RUNBOOK.read_text())
    for name, rule in rules.items():
        assert ALERTS[name] in metric_names(rule["expr"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url == RUNBOOK_BASE + name.lower(), name
        assert url.removeprefix(RUNBOOK_BASE) in anchors, f"no section {name} in {RUNBOOK}"


def test_the_runbook_check_notices_a_missing_section() -> None:
    text = RUNBOOK.read_text().replace("## IngestReplicaNotReady", "## Replica trouble")
    assert "ingestreplicanotready" not in github_anchors(text)


def test_rule_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULES.with_name("rules.test.yml").read_text())
    assert tests["rule_files"] == ["rules.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == set(ALERTS)
    assert silent == set(ALERTS)


def test_dashboard_has_the_operational_health_panels() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "ingest-worker"
    titles = {p["title"] for p in dashboard_panels(dashboard)}
    assert {
        "Open incidents by severity",
        "Time to acknowledge",
        "Time to resolve",
        "Signals by outcome per topic",
        "Dead letters by reason",
        "Consumer lag",
        "Outbox backlog",
        "Batch duration",
        "Gateway requests by status",
    } <= titles
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_parses_and_uses_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert "h" in panel["gridPos"] and "w" in panel["gridPos"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 15
    for where, expr in queries:
        assert metric_names(expr), where


@pytest.mark.parametrize(
    "expr",
    [
        "sum by (topic) (rate(ingest_signals_total[5m])",  # unbalanced
        "rate(ingest_signals_total)",  # a range function on an instant vector
        'sum({job="ingest-worker"})',  # no metric name: cannot be checked
    ],
)
def test_the_query_check_rejects_what_cannot_be_checked(expr: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the parser's own error types
        metric_names(expr)


def test_grafana_variables_are_substituted_before_parsing() -> None:
    expr = 'sum(rate(ingest_signals_total{topic=~"$topic"}[$__rate_interval]))'
    assert metric_names(grafana_to_promql(expr)) == {"ingest_signals_total"}
    assert DASHBOARD.exists()


def test_metric_names_reads_every_selector() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left b"
        ' or {__name__="c"} unless d offset 10m'
    )
    names: Any = metric_names(expr)
    assert names == {"a_bucket", "b", "c", "d"}
