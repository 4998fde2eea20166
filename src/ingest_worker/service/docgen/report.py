"""The current benchmark report (`bench/results/latest.md`) as a documentation page.

The report is written by `make bench` for the people who run it; the page keeps its figures and
drops what only makes sense in the repository's history (the commit measured, the names of
planning documents), so that it reads as a description of the product.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest_worker.service.docgen.markdown import GENERATED_NOTE

_DROP_LINE = re.compile(r"^\*\*Code\*\*:")
_REWRITES = (
    (re.compile(r"\(seed \d+, "), "("),  # "(seed 7, mean value …)": the stream's random seed
    (re.compile(r"\s*\((?:issue|SPEC|seed)[^)]*\)"), ""),  # "(issue 15)", "(seed 000)"
    (re.compile(r"\bcommit `[0-9a-f]{7,40}`"), "the measured tree"),
    (re.compile(r"Plot: `latest\.png`\. Raw data: `latest\.json`\."), ""),
)


def performance_report(root: Path) -> str:
    """The page, or a placeholder when no report was ever written."""
    source = root / "bench" / "results" / "latest.md"
    if not source.is_file():
        return "# The current benchmark report\n\nNo report yet: run `make bench`.\n"
    lines = source.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        if _DROP_LINE.match(line):
            continue
        for pattern, replacement in _REWRITES:
            line = pattern.sub(replacement, line)
        kept.append(line.rstrip())
    title, body = kept[0].lstrip("# ").strip(), kept[1:]
    head = [
        f"# The current benchmark report: {title}",
        "",
        GENERATED_NOTE.replace(
            "from the code", "from `bench/results/latest.md` (written by `make bench`)"
        ),
    ]
    text = "\n".join([*head, *body]).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
