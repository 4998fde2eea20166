"""The README's five-minute tour, run as a reader would: against a real `ingest-worker dev`.

Every ```console block of the tour section is a list of `$ ` commands, each followed by the output
the README shows. The commands run in a shell from the repository root, with `ingest-worker` on the
PATH and the dev services moved to free ports through the variables `make run` honours; the output
must equal the README's once times, ids, partitions and offsets are normalized and runs of spaces
collapsed. The worker applies signals asynchronously, so a command whose output does not match yet
is run again until it does or a deadline passes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest_worker.service.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TOUR_HEADING = "## A five-minute tour"
DEV_HTTP_PORT, DEV_GATEWAY_PORT = 8080, 8081
STEP_DEADLINE_SECONDS = 30.0
START_DEADLINE_SECONDS = 120.0

_PROGRESS_BAR = "━"
_CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NORMALIZE = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r'"(partition|offset)":\d+'), r'"\1":<n>'),
    (re.compile(r"[ \t]+"), " "),
)


@dataclass(frozen=True)
class Step:
    command: str
    expected: str


def tour_steps(readme: str) -> list[Step]:
    """The `$ ` commands of the tour's console blocks, each with the output shown under it."""
    section = readme.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    for block in _CONSOLE.findall(section):
        command: str | None = None
        output: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    steps.append(Step(command, "\n".join(output)))
                command, output = line[2:], []
            elif command is not None:
                output.append(line)
        if command is not None:
            steps.append(Step(command, "\n".join(output)))
    return steps


def normalized(text: str) -> str:
    """Times, ids, partitions and offsets as placeholders, runs of spaces as one, no progress bar
    (a terminal redraws it; captured output keeps its last frame)."""
    for pattern, replacement in _NORMALIZE:
        text = pattern.sub(replacement, text)
    lines = (line.strip() for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line and _PROGRESS_BAR not in line)


def test_the_tour_covers_the_first_hour() -> None:
    commands = [step.command for step in tour_steps(README.read_text(encoding="utf-8"))]
    for needed in ("send", "incidents", "acknowledge", "resolve", "timeline"):
        assert any(c.startswith(f"ingest-worker {needed} ") for c in commands), needed
    assert any(c.startswith("curl ") and "/v1/signals/alertmanager" in c for c in commands)


def test_normalizing_keeps_what_a_reader_compares() -> None:
    shown = "#1.2   2026-12-07T20:55:16.218050Z  incident.acknowledged      by=alice"
    real = "#1.2   2026-12-08T09:01:02Z  incident.acknowledged      by=alice"
    assert normalized(shown) == normalized(real)
    assert normalized(shown) != normalized(real.replace("alice", "bob"))
    assert normalized('{"partition":1,"offset":0}') == normalized('{"partition":0,"offset":7}')
    assert normalized("sending ━━━━━━━━ 100% 0:00:00\n1 sent") == normalized("1 sent")


@dataclass
class DevProcess:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    http_port: int
    gateway_port: int
    log: Path

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ports = {
        "INGEST_DEV_POSTGRES_PORT": free_port(),
        "INGEST_DEV_KAFKA_PORT": free_port(),
        "INGEST_HTTP_PORT": free_port(),
        "INGEST_GATEWAY_PORT": free_port(),
    }
    env.update({name: str(port) for name, port in ports.items()})
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ingest-worker", "dev"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = DevProcess(proc, env, ports["INGEST_HTTP_PORT"], ports["INGEST_GATEWAY_PORT"], log)
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not (_ready(process.http_port) and _ready(process.gateway_port)):
            if proc.poll() is not None:
                pytest.fail(f"ingest-worker dev exited with {proc.returncode}:\n{process.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"ingest-worker dev not ready:\n{process.tail()}")
            time.sleep(0.2)
        yield process
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _localized(command: str, dev: DevProcess) -> str:
    """The README's default ports replaced by the ones this run's dev services use."""
    return command.replace(
        f"localhost:{DEV_GATEWAY_PORT}", f"localhost:{dev.gateway_port}"
    ).replace(f"localhost:{DEV_HTTP_PORT}", f"localhost:{dev.http_port}")


@pytest.mark.e2e
def test_the_readme_tour_prints_what_the_readme_shows(dev: DevProcess) -> None:
    steps = tour_steps(README.read_text(encoding="utf-8"))
    assert steps, "no ```console block with `$ ` commands in the README's tour"
    for step in steps:
        command = _localized(step.command, dev)
        deadline = time.monotonic() + STEP_DEADLINE_SECONDS
        while True:
            run = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=dev.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            matches = run.returncode == 0 and normalized(run.stdout) == normalized(step.expected)
            if matches or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert matches, (
            f"README tour step `{step.command}` (exit {run.returncode}) printed:\n{run.stdout}"
            f"{run.stderr}\nthe README shows:\n{step.expected}\n"
            f"normalized, printed:\n{normalized(run.stdout)}\nshown:\n{normalized(step.expected)}"
        )
