"""service.runtime: the worker process's event loop, and its collector settings (each
collector case in a fresh interpreter: the collector is process-wide)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from ingest_worker.service import runtime
from ingest_worker.service.config import Settings

SCRIPT = """
import gc, json, sys
before = gc.get_threshold()
garbage = [[i] for i in range(1000)]
from ingest_worker.service.runtime import tune_gc
after = tune_gc(int(sys.argv[1]))
print(json.dumps({"before": before, "after": after, "current": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _run(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threshold)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    result: dict[str, list[int] | int] = json.loads(out)
    return result


def test_a_threshold_raises_the_first_generation_and_freezes_the_start_up_objects() -> None:
    result = _run(50_000)
    assert result["current"] == result["after"] == [50_000, 20, 20]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1000


def test_zero_keeps_the_interpreter_defaults_and_freezes_nothing() -> None:
    result = _run(0)
    assert result["current"] == result["after"] == result["before"]
    assert result["frozen"] == 0


def test_the_setting_defaults_to_fifty_thousand_and_refuses_negatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().gc_threshold == 50_000
    monkeypatch.setenv("INGEST_GC_THRESHOLD", "-1")
    with pytest.raises(ValueError, match="gc_threshold"):
        Settings()


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_worker_runs_on_the_configured_event_loop(name: str, module: str) -> None:
    seen: list[str] = []

    async def main() -> int:
        seen.append(type(asyncio.get_running_loop()).__module__)
        return 7

    assert runtime.run(main, event_loop=name) == 7
    assert seen[0].split(".")[0] == module


def test_the_event_loop_defaults_to_uvloop() -> None:
    assert Settings().event_loop == "uvloop"
    assert runtime.loop_factory("asyncio") is None
