"""Every metric name the dashboard and the alerting rules use, against a live `/metrics` scrape.

The worker runs as users run it (`ingest-worker run`, tests/e2e/process.py) on the test session's
PostgreSQL and broker; when the CLI has a `gateway` command, the gateway is scraped too. A name
passes when a scraped `# TYPE` line declares its family, or when tests/deploy/planned.py lists it
as not exported yet; a listed name that is exported fails, so the list only shrinks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest_worker.service.cli import build_parser
from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port
from tests.deploy.planned import PLANNED_METRICS
from tests.deploy.support import exposed_families, family_of, used_metric_names
from tests.e2e.process import WorkerProcess, worker_environment

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), ""
    except OSError:
        return 0, ""


def _cli_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices or ())


async def _scrape_gateway(settings: Settings, log: Path) -> str:
    """`ingest-worker gateway` in its own process: its /metrics once /readyz answers."""
    port = free_port()
    env = worker_environment(settings, free_port())
    env["INGEST_GATEWAY_PORT"] = str(port)
    exe = Path(sys.executable).with_name("ingest-worker")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(exe), "gateway"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz"))[0] != 200:
            assert proc.poll() is None, f"gateway exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"gateway not ready: {log.read_text()}"
            await asyncio.sleep(0.1)
        status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        return text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _scrape_notify(settings: Settings, tmp_path: Path) -> str:
    """`ingest-worker notify` in its own process, with one subscription: its /metrics."""
    port = free_port()
    subscriptions = tmp_path / "subscriptions.json"
    subscriptions.write_text(
        '{"subscriptions": [{"id": "scrape", "url": "https://example.com/", "format": "generic"}]}'
    )
    env = worker_environment(settings, free_port())
    env["INGEST_NOTIFY_HTTP_PORT"] = str(port)
    env["INGEST_SUBSCRIPTIONS_FILE"] = str(subscriptions)
    env["INGEST_NOTIFY_ALLOWED_NETWORKS"] = "[]"
    log = tmp_path / "notify.log"
    exe = Path(sys.executable).with_name("ingest-worker")
    with log.open("ab") as out:
        proc = subprocess.Popen([str(exe), "notify"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while (result := await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[
            0
        ] != 200:
            assert proc.poll() is None, f"notify exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"notify not serving: {log.read_text()}"
            await asyncio.sleep(0.1)
        return result[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
async def exported(make_settings: Callable[..., Settings], tmp_path: Path) -> dict[str, str]:
    """metric family → type, from the worker's (and the gateway's, if any) /metrics."""
    settings = make_settings()
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{worker.http_port}/metrics")
        assert status == 200, worker.tail()
    finally:
        worker.signal(signal.SIGTERM)
        try:
            await worker.wait_exit(30)
        finally:
            worker.kill()
    families = exposed_families(text)
    assert "ingest_ready" in families, text[:2000]
    if "gateway" in _cli_commands() and not os.environ.get("INGEST_DEPLOY_SKIP_GATEWAY"):
        families |= exposed_families(await _scrape_gateway(settings, tmp_path / "gateway.log"))
    if "notify" in _cli_commands():
        families |= exposed_families(await _scrape_notify(settings, tmp_path))
    return families


async def test_dashboard_and_rules_use_only_exported_or_planned_metrics(
    exported: dict[str, str],
) -> None:
    planned = {name: kind for name, (kind, _) in PLANNED_METRICS.items()}
    unknown = {
        name: sorted(where)
        for name, where in used_metric_names().items()
        if family_of(name, exported) is None and family_of(name, planned) is None
    }
    assert unknown == {}, "used but neither exported nor in tests/deploy/planned.py"


async def test_planned_metrics_are_not_exported_yet(exported: dict[str, str]) -> None:
    landed = set(PLANNED_METRICS) & set(exported)
    assert landed == set(), f"exported now: remove {landed} from tests/deploy/planned.py"
    mismatched = {
        n: k for n, (k, _) in PLANNED_METRICS.items() if n in exported and exported[n] != k
    }
    assert mismatched == {}


def test_family_resolution_needs_the_right_type() -> None:
    families = exposed_families(
        "# HELP a_seconds x\n# TYPE a_seconds histogram\n"
        "# HELP b_total x\n# TYPE b_total counter\n# TYPE c gauge\n"
    )
    assert family_of("a_seconds_bucket", families) == "a_seconds"
    assert family_of("a_seconds_count", families) == "a_seconds"
    assert family_of("b_total", families) == "b_total"
    assert family_of("c", families) == "c"
    assert family_of("c_bucket", families) is None
    assert family_of("b_total_bucket", families) is None
    assert family_of("d", families) is None
