"""Documentation generated from the code, so that it cannot drift from it.

`generate(root)` renders the command-line reference (from the CLI's own parser), the
configuration reference (from the settings models) and one page per source (from the golden
fixtures under `tests/sources/`), as `{relative path: Markdown}`. `make docs-gen` writes them;
a test regenerates them in memory and fails when the committed files differ.
"""

from __future__ import annotations

from pathlib import Path

from ingest_worker.service.docgen.cli_reference import cli_reference
from ingest_worker.service.docgen.config_reference import configuration_reference
from ingest_worker.service.docgen.report import performance_report
from ingest_worker.service.docgen.source_pages import source_pages

__all__ = ["generate", "stale", "write"]


def generate(root: Path) -> dict[str, str]:
    """Every generated page, by path relative to the repository root."""
    pages = {
        "docs/reference/cli.md": cli_reference(),
        "docs/reference/configuration.md": configuration_reference(),
        "docs/performance/report.md": performance_report(root),
    }
    pages.update(source_pages(root))
    return pages


def stale(root: Path) -> list[str]:
    """The generated pages whose committed text differs from what the code renders now."""
    return [
        path
        for path, text in generate(root).items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]


def write(root: Path) -> list[str]:
    """Write every generated page; return the ones that changed."""
    changed = []
    for path, text in generate(root).items():
        target = root / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed
