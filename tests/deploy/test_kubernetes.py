"""deploy/kubernetes as `kubectl kustomize` renders it: schema-valid offline, and the operational
properties a production deployment needs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from ingest_worker.service.config import Settings
from tests.deploy.planned import PLANNED_SETTINGS
from tests.deploy.support import (
    KUBERNETES,
    Resource,
    find,
    grace_problems,
    kustomizations,
    pod_templates,
    probe_problems,
    render,
    schema_errors,
    secret_problems,
    security_problems,
    selects,
)

#: The oldest Kubernetes minor these manifests support and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")


@pytest.fixture(scope="module")
def default() -> list[Resource]:
    return render(KUBERNETES)


@pytest.fixture(scope="module")
def with_hpa() -> list[Resource]:
    return render(KUBERNETES / "hpa")


def configmap(resources: list[Resource]) -> dict[str, str]:
    data: dict[str, str] = find(resources, "ConfigMap", "ingest-worker")["data"]
    return data


def shutdown_grace(resources: list[Resource]) -> float:
    default = Settings.model_fields["shutdown_grace_seconds"].default
    return float(configmap(resources).get("INGEST_SHUTDOWN_GRACE_SECONDS", default))


# --- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", ["default", "with_hpa"])
def test_every_rendered_resource_is_schema_valid(
    variant: str, version: str, request: pytest.FixtureRequest
) -> None:
    resources = request.getfixturevalue(variant)
    errors = [e for r in resources for e in schema_errors(r, version)]
    assert errors == []


def test_the_example_secret_is_schema_valid_but_not_in_the_kustomization(
    default: list[Resource],
) -> None:
    (secret,) = yaml.safe_load_all((KUBERNETES / "secret.example.yaml").read_text())
    assert schema_errors(secret, KUBERNETES_VERSIONS[-1]) == []
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not [r for r in default if r["kind"] == "Secret"]


def test_every_manifest_file_is_rendered_by_a_kustomization() -> None:
    listed: set[str] = set()
    for directory in kustomizations():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed |= {str((directory / r).resolve()) for r in kustomization["resources"]}
    files = {
        str(p.resolve())
        for p in KUBERNETES.rglob("*.yaml")
        if p.name not in ("kustomization.yaml", "secret.example.yaml")
    }
    assert files - listed == set()


BROKEN: dict[str, Callable[[list[Resource]], None]] = {
    "unknown field in a Deployment": lambda rs: find(rs, "Deployment", "ingest-worker")[
        "spec"
    ].update(replica=3),
    "port as a string": lambda rs: find(rs, "Service", "ingest-gateway")["spec"]["ports"][0].update(
        port="8081"
    ),
    "PDB with both budgets as a list": lambda rs: find(rs, "PodDisruptionBudget", "ingest-worker")[
        "spec"
    ].update(maxUnavailable=[1]),
    "unknown field in the ScaledObject": lambda rs: find(rs, "ScaledObject", "ingest-worker")[
        "spec"
    ].update(maxReplicas=6),
    "non-string KEDA trigger metadata": lambda rs: find(rs, "ScaledObject", "ingest-worker")[
        "spec"
    ]["triggers"][0]["metadata"].update(lagThreshold=1000),
    "PodMonitor without a selector": lambda rs: find(rs, "PodMonitor", "ingest-worker")["spec"].pop(
        "selector"
    ),
    "PodMonitor port number out of range": lambda rs: find(rs, "PodMonitor", "ingest-worker")[
        "spec"
    ]["podMetricsEndpoints"][0].update(portNumber=70000),
    "a kind nobody has a schema for": lambda rs: rs.append(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    ),
}


@pytest.mark.parametrize("breakage", BROKEN)
def test_the_schema_check_rejects_a_broken_manifest(breakage: str, default: list[Resource]) -> None:
    resources = copy.deepcopy(default)
    BROKEN[breakage](resources)
    assert [e for r in resources for e in schema_errors(r, KUBERNETES_VERSIONS[-1])] != []


# --- security, probes, grace period, secrets --------------------------------------------------


def test_workloads_are_non_root_read_only_and_capability_free(default: list[Resource]) -> None:
    assert security_problems(default) == []
    assert {w["metadata"]["name"] for w, _ in pod_templates(default)} == {
        "ingest-worker",
        "ingest-gateway",
        "ingest-worker-migrate",
    }


def _container(resources: list[Resource], kind: str, name: str) -> dict[str, Any]:
    container: dict[str, Any] = find(resources, kind, name)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


SECURITY_BREAKAGES: dict[str, tuple[Callable[[list[Resource]], None], str]] = {
    "runAsNonRoot removed": (
        lambda rs: [
            _container(rs, "Deployment", "ingest-worker")["securityContext"].pop("runAsNonRoot"),
            find(rs, "Deployment", "ingest-worker")["spec"]["template"]["spec"][
                "securityContext"
            ].pop("runAsNonRoot"),
        ],
        "runAsNonRoot",
    ),
    "root user": (
        lambda rs: _container(rs, "Job", "ingest-worker-migrate")["securityContext"].update(
            runAsUser=0
        ),
        "root",
    ),
    "privilege escalation": (
        lambda rs: _container(rs, "Deployment", "ingest-gateway")["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "allowPrivilegeEscalation",
    ),
    "writable root filesystem": (
        lambda rs: _container(rs, "Deployment", "ingest-worker")["securityContext"].pop(
            "readOnlyRootFilesystem"
        ),
        "readOnlyRootFilesystem",
    ),
    "capabilities kept": (
        lambda rs: _container(rs, "Deployment", "ingest-worker")["securityContext"].pop(
            "capabilities"
        ),
        "drop ALL",
    ),
    "no memory limit": (
        lambda rs: _container(rs, "Deployment", "ingest-gateway")["resources"]["limits"].pop(
            "memory"
        ),
        "limits.memory",
    ),
}


@pytest.mark.parametrize("breakage", SECURITY_BREAKAGES)
def test_the_security_check_rejects_a_weakened_workload(
    breakage: str, default: list[Resource]
) -> None:
    resources = copy.deepcopy(default)
    mutate, expected = SECURITY_BREAKAGES[breakage]
    mutate(resources)
    problems = security_problems(resources)
    assert any(expected in p for p in problems), problems


def test_deployments_probe_healthz_and_readyz_on_their_port(default: list[Resource]) -> None:
    assert probe_problems(default) == []
    worker = _container(default, "Deployment", "ingest-worker")
    gateway = _container(default, "Deployment", "ingest-gateway")
    assert worker["command"] == ["ingest-worker", "run"]
    assert gateway["command"] == ["ingest-worker", "gateway"]
    assert [p["containerPort"] for p in worker["ports"]] == [8080]
    assert [p["containerPort"] for p in gateway["ports"]] == [8081]
    assert configmap(default)["INGEST_HTTP_PORT"] == "8080"
    broken = copy.deepcopy(default)
    _container(broken, "Deployment", "ingest-worker")["readinessProbe"]["httpGet"]["path"] = "/"
    _container(broken, "Deployment", "ingest-gateway").pop("livenessProbe")
    assert len(probe_problems(broken)) == 2


def test_grace_period_is_above_the_shutdown_grace(default: list[Resource]) -> None:
    assert grace_problems(default, shutdown_grace(default)) == []
    broken = copy.deepcopy(default)
    configmap(broken)["INGEST_SHUTDOWN_GRACE_SECONDS"] = "45"
    assert len(grace_problems(broken, shutdown_grace(broken))) == 2


def test_secrets_are_referenced_never_inline(default: list[Resource]) -> None:
    assert secret_problems(default) == []
    example = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    referenced = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, template in pod_templates(default)
        for c in template["spec"]["containers"]
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert referenced <= {(example["metadata"]["name"], key) for key in example["stringData"]}
    broken = copy.deepcopy(default)
    _container(broken, "Deployment", "ingest-worker")["env"][0] = {
        "name": "INGEST_DATABASE_URL",
        "value": "postgresql://ingest:hunter2@db/ingest",
    }
    configmap(broken)["INGEST_KAFKA_SASL_PASSWORD"] = "hunter2"
    assert len(secret_problems(broken)) == 3


def test_configmap_sets_only_real_settings(default: list[Resource]) -> None:
    fields = {f"INGEST_{name.upper()}" for name in Settings.model_fields}
    assert set(configmap(default)) - fields - set(PLANNED_SETTINGS) == set()
    landed = set(PLANNED_SETTINGS) & fields
    assert not landed, f"{landed} exist now: remove them from tests/deploy/planned.py"
    Settings(
        **{
            k.removeprefix("INGEST_").lower(): v
            for k, v in configmap(default).items()
            if k in fields
        }
    )


def test_migration_job_runs_migrate_and_workers_do_not_race_for_it(
    default: list[Resource],
) -> None:
    job = find(default, "Job", "ingest-worker-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "ingest-worker",
        "migrate",
    ]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert configmap(default)["INGEST_MIGRATE_ON_START"] == "false"


# --- availability, network, scaling, monitoring ------------------------------------------------


def _pod_labels(resources: list[Resource], kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = find(resources, kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_each_deployment_has_a_disruption_budget(default: list[Resource]) -> None:
    budgets = [r for r in default if r["kind"] == "PodDisruptionBudget"]
    assert {b["apiVersion"] for b in budgets} == {"policy/v1"}
    for name in ("ingest-worker", "ingest-gateway"):
        labels = _pod_labels(default, "Deployment", name)
        covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(covering) == 1, name
        assert (
            covering[0]["spec"].get("maxUnavailable", 0) >= 1
            or covering[0]["spec"].get("minAvailable")
            < find(default, "Deployment", name)["spec"]["replicas"]
        )


def _policies(resources: list[Resource], labels: dict[str, str]) -> list[Resource]:
    return [
        r
        for r in resources
        if r["kind"] == "NetworkPolicy" and selects(r["spec"]["podSelector"], labels)
    ]


def _ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for rule in rules for p in rule.get("ports", [])}


@pytest.mark.parametrize(
    ("kind", "name", "ingress", "egress"),
    [
        ("Deployment", "ingest-worker", {8080}, {9092, 5432}),
        ("Deployment", "ingest-gateway", {8081}, {9092}),
        ("Job", "ingest-worker-migrate", set(), {5432}),
    ],
)
def test_network_policy_allows_only_what_the_component_needs(
    default: list[Resource], kind: str, name: str, ingress: set[int], egress: set[int]
) -> None:
    policies = _policies(default, _pod_labels(default, kind, name))
    assert all(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in policies)
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies)
    allowed_in = _ports([r for p in policies for r in p["spec"].get("ingress", [])])
    allowed_out = _ports([r for p in policies for r in p["spec"].get("egress", [])])
    assert allowed_in == {("TCP", port) for port in ingress}
    assert allowed_out == {("TCP", port) for port in egress} | {("UDP", 53), ("TCP", 53)}
    # No rule without ports: that would open every port.
    rules = [r for p in policies for k in ("ingress", "egress") for r in p["spec"].get(k, [])]
    assert all(rule.get("ports") for rule in rules)


def test_keda_scales_the_worker_on_its_group_lag_capped_at_the_partitions(
    default: list[Resource], with_hpa: list[Resource]
) -> None:
    scaled = find(default, "ScaledObject", "ingest-worker")["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ingest-worker",
    }
    (trigger,) = scaled["triggers"]
    config = configmap(default)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config["INGEST_GROUP_ID"]
    assert trigger["metadata"]["bootstrapServers"] == config["INGEST_KAFKA_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"].get("allowIdleConsumers", "false") == "false"
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    hpa = find(with_hpa, "HorizontalPodAutoscaler", "ingest-worker")["spec"]
    assert hpa["maxReplicas"] == scaled["maxReplicaCount"], "both capped at the partition count"
    assert hpa["scaleTargetRef"] == scaled["scaleTargetRef"]
    assert [m["type"] for m in hpa["metrics"]] == ["External"]


def test_the_hpa_variant_replaces_the_scaled_object_and_keeps_everything_else(
    default: list[Resource], with_hpa: list[Resource]
) -> None:
    assert not [r for r in with_hpa if r["kind"] == "ScaledObject"]
    assert not [r for r in default if r["kind"] == "HorizontalPodAutoscaler"]
    rest = [r for r in with_hpa if r["kind"] != "HorizontalPodAutoscaler"]
    assert rest == [r for r in default if r["kind"] != "ScaledObject"]


def test_podmonitor_scrapes_worker_and_gateway_pods_on_their_http_port(
    default: list[Resource],
) -> None:
    monitor = find(default, "PodMonitor", "ingest-worker")["spec"]
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for kind, name, scraped in [
        ("Deployment", "ingest-worker", True),
        ("Deployment", "ingest-gateway", True),
        ("Job", "ingest-worker-migrate", False),
    ]:
        assert selects(monitor["selector"], _pod_labels(default, kind, name)) is scraped
        if scraped:
            ports = _container(default, kind, name)["ports"]
            assert endpoint["port"] in {p["name"] for p in ports}


def test_gateway_service_selects_the_gateway_pods_only(default: list[Resource]) -> None:
    service = find(default, "Service", "ingest-gateway")["spec"]
    assert selects(
        {"matchLabels": service["selector"]}, _pod_labels(default, "Deployment", "ingest-gateway")
    )
    assert not selects(
        {"matchLabels": service["selector"]}, _pod_labels(default, "Deployment", "ingest-worker")
    )
    (port,) = service["ports"]
    assert port["port"] == 8081
    assert port["targetPort"] in {
        p["name"] for p in _container(default, "Deployment", "ingest-gateway")["ports"]
    }


def test_every_container_runs_the_configured_image(default: list[Resource]) -> None:
    images = {c["image"] for _, t in pod_templates(default) for c in t["spec"]["containers"]}
    assert images == {"ghcr.io/ingest-worker/ingest-worker:0.1.0"}
