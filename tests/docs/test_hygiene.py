"""The README and the documentation speak of the product: no issue numbers, commit hashes,
planning documents or seed references, and no link to a file the repository lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What a newcomer cannot look up. Code blocks (payloads, hashes of evidence) are exempt from the
#: hexadecimal rule only, since real payloads carry fingerprints and digests.
FORBIDDEN = {
    "issue number": re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE),
    "issue reference": re.compile(r"(?<![\w&/])#\d{2,}(?![\d.])"),
    "planning document": re.compile(r"\bSPEC\b|§"),
    "seed reference": re.compile(r"\bseeds?\s+\d", re.IGNORECASE),
}
#: An abbreviated (7–12 digits) or full (40) commit hash standing alone in prose; ids inside keys,
#: ARNs and URLs (after `:` or `/`) and 16- or 32-digit fingerprints and task ids are data.
COMMIT = re.compile(
    r"(?<![\w:/.@#=-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])(?:[0-9a-f]{40}|[0-9a-f]{7,12})(?![\w:/.@=-])"
)
FENCE = re.compile(r"^ *```.*?^ *```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [
        ROOT / "README.md",
        ROOT / "deploy" / "RUNBOOK.md",  # included in the site
        *sorted((ROOT / "docs").rglob("*.md")),
    ]


def problems(text: str) -> list[str]:
    found = [
        f"{name}: {match.group(0)!r}"
        for name, pattern in FORBIDDEN.items()
        for match in pattern.finditer(text)
    ]
    prose = FENCE.sub("", text)
    found += [f"commit hash: {m.group(0)!r}" for m in COMMIT.finditer(prose)]
    return found


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_document_names_things_by_what_they_are(path: Path) -> None:
    assert problems(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "text",
    [
        "see issue 15",
        "fixed in #21",
        "as SPEC §7 says",
        "seed 000 §1.A",
        "measured on `f5602cc`",
        "commit 1eebb23 did it",
    ],
)
def test_each_kind_of_reference_is_caught(text: str) -> None:
    assert problems(text) != []


@pytest.mark.parametrize(
    "text",
    [
        "key `alertmanager:8a07086b74f3ba78`",
        "applied: OPEN → ACKNOWLEDGED (event #2)",
        '```json\n{"fingerprint": "8a07086b74f3ba78"}\n```',
        "the New Relic issue id",
        "#1.12   2026-11-23T09:00:00Z  incident.updated",
    ],
)
def test_product_words_are_not_mistaken_for_references(text: str) -> None:
    assert problems(text) == []


def test_the_readme_links_only_to_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (ROOT / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert missing == []


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
