"""Markdown helpers shared by the generated pages."""

from __future__ import annotations

GENERATED_NOTE = (
    '!!! note "Generated"\n'
    "    This page is generated from the code by `make docs-gen`; edit the code, not this page."
)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")
