"""deploy/Dockerfile: a base image pinned by digest, both roles' ports exposed, and no fixed
health check that would fit only one role (the orchestrators probe each role on its port)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.support import COMPOSE, DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"
DIGEST = re.compile(r"^[\w.\-/:]+@sha256:[0-9a-f]{64}$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    steps = []
    for line in (raw.strip() for raw in joined.splitlines()):
        if line and not line.startswith("#"):
            name, _, arguments = line.partition(" ")
            steps.append((name.upper(), arguments.strip()))
    return steps


def base_images(text: str) -> list[str]:
    """The image of every FROM that is not an earlier stage, ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for name, value in instructions(text):
        if name == "ARG" and "=" in value:
            key, _, default = value.partition("=")
            args[key] = default
        elif name == "FROM":
            image, *rest = value.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image)
            if image not in stages:
                images.append(image)
            if len(rest) == 2 and rest[0].upper() == "AS":
                stages.add(rest[1])
    return images


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_every_base_image_is_pinned_by_digest(dockerfile: str) -> None:
    images = base_images(dockerfile)
    assert images and all(DIGEST.match(image) for image in images), images


def test_a_tag_only_base_image_is_caught() -> None:
    assert not all(DIGEST.match(i) for i in base_images("FROM python:3.11-slim AS build\n"))


def test_both_roles_ports_are_exposed(dockerfile: str) -> None:
    exposed = {
        p for name, value in instructions(dockerfile) if name == "EXPOSE" for p in value.split()
    }
    assert exposed == {"8080", "8081"}


def test_the_image_leaves_health_checks_to_the_orchestrator(dockerfile: str) -> None:
    checks = [value for name, value in instructions(dockerfile) if name == "HEALTHCHECK"]
    assert checks == ["NONE"]
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    for service, port in (("worker", 8080), ("gateway", 8081)):
        test = " ".join(compose[service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in test, service


def test_the_image_runs_as_the_unprivileged_user_the_manifests_expect(dockerfile: str) -> None:
    steps = instructions(dockerfile)
    assert ("USER", "ingest") in steps
    assert any(name == "RUN" and "--uid 10001" in value for name, value in steps)
