"""Golden cases of every registered source: `tests/sources/<source name>/<case>.json`.

Each case is a verbatim record value; `<case>.expected.json` beside it is its normalized output.
Every case is decoded as a record received at `RECORD_TIME` (its Kafka timestamp): the signal
time of a firing alert that carries no start time of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

CASES_ROOT = Path(__file__).resolve().parent
#: The record timestamp every golden case is decoded with.
RECORD_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def case_files() -> list[Path]:
    """Every case of every source folder (expected outputs excluded), sorted."""
    return sorted(
        path for path in CASES_ROOT.glob("*/*.json") if not path.name.endswith(".expected.json")
    )


def case_folders() -> list[str]:
    return sorted(
        path.name
        for path in CASES_ROOT.iterdir()
        if path.is_dir() and not path.name.startswith("_")
    )


class _Cases:
    """`FIXTURES / "deploy-status-red.json"`: a case by file name, whatever its source folder."""

    def __truediv__(self, name: str) -> Path:
        found = [path for path in case_files() if path.name == name]
        if len(found) != 1:
            raise FileNotFoundError(f"no single case file named {name} under {CASES_ROOT}")
        return found[0]


FIXTURES = _Cases()
