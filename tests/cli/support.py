"""Running `ingest-worker` as users do: its own process, configured by environment variables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port
from tests.e2e.process import worker_environment

CLI = str(Path(sys.executable).with_name("ingest-worker"))


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without any INGEST_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(extra)
    return env


def settings_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """INGEST_* variables for every setting of `settings` (its broker, database and topics)."""
    env = worker_environment(settings, free_port())
    env.update(extra)
    return env


def run_cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CLI, *args], env=env, input=stdin, capture_output=True, timeout=timeout, check=False
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


async def arun_cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`run_cli` off the event loop (a worker of the test may be running in it)."""
    return await asyncio.to_thread(run_cli, env, *args, stdin=stdin, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing command prints on stderr (asserting that it is one line)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]
