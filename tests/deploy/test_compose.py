"""docker-compose.yml against the Compose Specification schema, and what it must run."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.support import COMPOSE, ROOT, SCHEMAS


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    assert [e.message for e in validator.iter_errors(compose)] == []


@pytest.mark.parametrize(
    "breakage",
    ["unknown service key", "bad depends_on condition", "ports as a mapping", "profile as string"],
)
def test_the_compose_check_rejects_a_broken_file(
    breakage: str, compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    services = broken["services"]
    if breakage == "unknown service key":
        services["worker"]["restart_policy"] = "always"
    elif breakage == "bad depends_on condition":
        services["worker"]["depends_on"]["migrate"]["condition"] = "service_done"
    elif breakage == "ports as a mapping":
        services["gateway"]["ports"] = {"8081": 8081}
    else:
        services["grafana"]["profiles"] = "observability"
    assert list(validator.iter_errors(broken)) != []


def test_compose_runs_the_whole_system(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"] == ["run"]
    assert services["gateway"]["command"] == ["gateway"]
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert "8081:8081" in services["gateway"]["ports"]
    assert services["gateway"]["environment"]["INGEST_GATEWAY_PORT"] == "8081"
    for name in ("migrate", "worker", "gateway"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["environment"]["INGEST_MIGRATE_ON_START"] == "false"
        assert services[name]["read_only"] is True
        assert "profiles" not in services[name]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]


def test_observability_services_mount_files_that_exist(compose: dict[str, Any]) -> None:
    mounts = {
        target: source
        for name in ("prometheus", "grafana")
        for source, target, *_ in (v.split(":") for v in compose["services"][name]["volumes"])
    }
    for source in mounts.values():
        assert (ROOT / source).exists(), source
    assert mounts["/etc/prometheus/rules.yml"] == "./deploy/prometheus/rules.yml"
    assert mounts["/var/lib/grafana/dashboards/ingest-worker.json"] == (
        "./deploy/grafana/ingest-worker.json"
    )
    prometheus = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    assert prometheus["rule_files"] == ["rules.yml"]  # next to it, in the container as here
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    assert targets == {"worker:8080", "gateway:8081"}
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/ingest-worker.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
