"""Run the worker as users do: `ingest-worker run` in its own process, configured by environment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port


def worker_environment(settings: Settings, http_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"INGEST_{name.upper()}"] = str(value)
    env["INGEST_HTTP_PORT"] = str(http_port)
    env["INGEST_HTTP_HOST"] = "127.0.0.1"
    env["INGEST_LOG_FORMAT"] = "json"
    return env


@dataclass
class WorkerProcess:
    """One `ingest-worker run` process with its log file."""

    settings: Settings
    log_path: Path
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        exe = Path(sys.executable).with_name("ingest-worker")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(exe), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_environment(self.settings, self.http_port),
        )
        log.close()
        return self

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(self._get, "/readyz") != 200:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s: {self.tail()}")
            await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker still running after {timeout}s")
            await asyncio.sleep(0.05)
        return int(self.proc.returncode)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
