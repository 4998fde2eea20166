"""Named SQL blocks loaded once from `ingest_worker/sql/*.sql` (`-- name: <query>` headers)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a SQL file into `{name: sql}`; each block runs from its header to the next one."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def load_queries(file_name: str) -> dict[str, str]:
    """The named queries of `sql/<file_name>`, read from the installed package once."""
    text = (
        resources.files("ingest_worker.store.sql").joinpath(file_name).read_text(encoding="utf-8")
    )
    return parse_queries(text)
