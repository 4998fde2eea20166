"""The generated pages are current: regenerated in memory, they equal the committed files."""

from __future__ import annotations

from pathlib import Path

from ingest_worker.service.cli import build_parser
from ingest_worker.service.config import Settings
from ingest_worker.service.docgen import generate, stale
from ingest_worker.service.docgen.source_pages import MARKER
from ingest_worker.service.gateway.settings import GatewaySettings
from ingest_worker.sources.registry import SOURCES

ROOT = Path(__file__).resolve().parents[2]


def test_committed_pages_are_current() -> None:
    outdated = stale(ROOT)
    assert not outdated, f"generated documentation is stale: {outdated}; run `make docs-gen`"


def test_a_changed_page_is_reported_stale(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "reference" / "cli.md"
    page.parent.mkdir(parents=True)
    page.write_text(generate(ROOT)["docs/reference/cli.md"] + "edited by hand\n")
    assert "docs/reference/cli.md" in stale(tmp_path)


def test_every_subcommand_is_in_the_cli_reference() -> None:
    text = generate(ROOT)["docs/reference/cli.md"]
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert subparsers.choices is not None
    for name in subparsers.choices:
        assert f"`{name}`" in text or f"## {name}\n" in text, name


def test_every_setting_has_a_description_and_a_row() -> None:
    text = generate(ROOT)["docs/reference/configuration.md"]
    for model in (Settings, GatewaySettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description="
            assert f"`{prefix}{name}`".upper() in text.upper(), name


def test_every_source_page_keeps_its_prose_and_shows_its_cases() -> None:
    pages = generate(ROOT)
    for source in SOURCES:
        page = pages[f"docs/sources/{source.name}.md"]
        prose, _, generated = page.partition(MARKER)
        assert prose.startswith("# "), source.name
        assert "## Examples" in generated and "What it becomes:" in generated, source.name
