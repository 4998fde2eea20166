"""`ingest-worker dev` on ports moved by the dev port variables, and `--dev` commands following
it there: the same variables move both (no command talks to another instance's ports)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ingest_worker.service.embedded import free_port
from tests.cli.support import CLI, clean_environment, run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deploy-status-red.jsonl"
KEY = "deploy_status:prod:deploy-2026-11-23-001:2026-11-23T09:00:00Z"


def _wait_for(predicate: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`dev` exited with {proc.returncode}: {log.read_text()[-3000:]}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen: {log.read_text()[-3000:]}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status) == 200
    except OSError:
        return False


def test_dev_and_every_dev_flag_follow_the_dev_port_variables(tmp_path: Path) -> None:
    ports = {
        "INGEST_DEV_POSTGRES_PORT": free_port(), "INGEST_DEV_KAFKA_PORT": free_port(),
        "INGEST_HTTP_PORT": free_port(), "INGEST_GATEWAY_PORT": free_port(),
    }  # fmt: skip
    env = clean_environment(**{name: str(port) for name, port in ports.items()})
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CLI, "dev"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        banner = f"127.0.0.1:{ports['INGEST_DEV_POSTGRES_PORT']} and broker on 127.0.0.1:"
        _wait_for(lambda: banner in log.read_text(), "the banner", proc, log)
        http = f"http://127.0.0.1:{ports['INGEST_HTTP_PORT']}/readyz"
        gateway = f"http://127.0.0.1:{ports['INGEST_GATEWAY_PORT']}/readyz"
        _wait_for(lambda: _answers(http) and _answers(gateway), "readiness", proc, log)

        sent = run_cli(env, "send", "--dev", "--source", "deploy_status", str(EXAMPLE))
        assert (sent.returncode, sent.stdout) == (0, "1 sent\n"), sent.stderr

        def listed() -> bool:
            result = run_cli(env, "incidents", "--dev", "--json")
            keys = [json.loads(line)["incidentKey"] for line in result.stdout.splitlines()]
            return keys == [KEY]

        _wait_for(listed, "the incident in `incidents --dev`", proc, log)
        ack = run_cli(env, "acknowledge", "--dev", KEY, "--actor", "alice", "--role", "SRE_LEAD")
        assert ack.stdout == "applied: OPEN → ACKNOWLEDGED (event #2)\n", ack.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
