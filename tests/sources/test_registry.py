"""The source registry and the golden case folders match one to one; the layering contract
names every source module."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.contracts import SCHEMA_FILES
from ingest_worker.sources.registry import SOURCES
from tests.sources import CASES_ROOT, case_files, case_folders

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_registered_source_has_golden_cases() -> None:
    with_cases = {path.parent.name for path in case_files()}
    missing = [source.name for source in SOURCES if source.name not in with_cases]
    assert not missing, f"registered sources without cases in {CASES_ROOT}: {missing}"


def test_every_case_folder_belongs_to_a_registered_source() -> None:
    names = {source.name for source in SOURCES}
    orphans = [folder for folder in case_folders() if folder not in names]
    assert not orphans, f"case folders without a registered source: {orphans}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_case_folder_says_where_its_payloads_come_from(source: object) -> None:
    readme = CASES_ROOT / source.name / "README.md"  # type: ignore[attr-defined]
    assert readme.is_file(), f"{readme} (provenance of the cases) is missing"


def test_source_names_topics_and_settings_are_unique() -> None:
    for attribute in ("name", "topic", "setting"):
        values = [getattr(source, attribute) for source in SOURCES]
        assert len(values) == len(set(values)), attribute


def test_every_shape_publishes_a_schema_under_its_own_file_name() -> None:
    files = [shape.schema_file for source in SOURCES for shape in source.shapes]
    assert all(name.endswith(".schema.json") for name in files)
    assert len(files) == len(set(files)) == len(SCHEMA_FILES) - 1  # and the command schema


def test_settings_derive_one_topic_per_source_from_the_registry() -> None:
    settings = Settings()
    assert {source.name: settings.topic_of(source) for source in SOURCES} == {
        source.name: source.topic for source in SOURCES
    }


def test_topic_variables_override_the_registry_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_TOPIC_ECS", "custom.ecs")
    monkeypatch.setenv("INGEST_TOPIC_DEPLOY_STATUS", "custom.deploy")
    settings = Settings()
    assert settings.topic_of("ecs_stopped") == "custom.ecs"
    assert settings.topic_of("deploy_status") == "custom.deploy"
    assert settings.source_topics()["custom.ecs"].name == "ecs_stopped"


def test_two_sources_on_one_topic_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_TOPIC_ECS", "signals.runner")
    with pytest.raises(ValueError, match="same topic"):
        Settings().source_topics()


def test_the_independence_contract_lists_every_source_module() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    [independence] = [c for c in contracts if c["type"] == "independence"]
    # A source is a module or a package under `ingest_worker.sources` (the contract covers a
    # package's submodules): the first three parts of the module its wire models live in.
    modules = {
        ".".join(shape.wire.__module__.split(".")[:3])
        for source in SOURCES
        for shape in source.shapes
    }
    assert modules <= set(independence["modules"])
