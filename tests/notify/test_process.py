"""`ingest-worker notify` as users run it: a bad subscriptions file stops start-up; a SIGKILL in
the middle of a delivery loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest_worker.service.config import Settings
from ingest_worker.service.embedded import free_port
from tests.e2e.process import worker_environment
from tests.notify.conftest import publish
from tests.notify.events import SECRET_A, event_record
from tests.notify.receivers import Answer, Receiver
from tests.notify.standard_webhooks import verify

EXE = str(Path(sys.executable).with_name("ingest-worker"))


def test_a_bad_subscriptions_file_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "subs.json"
    path.write_text('{"subscriptions": [{"id": "a", "url": "https://x.example"}]}')
    env = {"PATH": "/usr/bin:/bin", "INGEST_SUBSCRIPTIONS_FILE": str(path)}
    done = subprocess.run([EXE, "notify"], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "format" in lines[0]


def _start(settings: Settings, subs: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    env = worker_environment(settings, port)
    env["INGEST_SUBSCRIPTIONS_FILE"] = str(subs)
    env["INGEST_NOTIFY_HTTP_PORT"] = str(port)
    env["INGEST_NOTIFY_ALLOWED_NETWORKS"] = json.dumps(settings.notify_allowed_networks)
    with log.open("ab") as out:
        return subprocess.Popen([EXE, "notify"], stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.mark.e2e
async def test_sigkill_in_the_middle_of_a_delivery_loses_nothing(
    notify_settings: Callable[..., Settings], receivers: Any, tmp_path: Path
) -> None:
    settings = notify_settings(notify_lanes=1)
    state = {"hang": True}
    receiver: Receiver = await receivers(
        lambda _i, _r: Answer(hang=True) if state["hang"] else Answer()
    )
    subs = tmp_path / "subs.json"
    healthy: Receiver = await receivers(lambda _i, _r: Answer())
    subs.write_text(json.dumps({"subscriptions": [
        {"id": "k", "url": receiver.url, "format": "generic", "secrets": [SECRET_A]},
        {"id": "ok", "url": healthy.url, "format": "generic"},
    ]}))  # fmt: skip
    records = [event_record(f"inc-{n}", 1, "incident.created") for n in range(5)]
    records += [event_record("inc-0", 2, "incident.acknowledged")]
    await publish(settings, records)
    log = tmp_path / "notify.log"
    proc = _start(settings, subs, log, free_port())
    try:
        await receiver.wait_for(1, timeout=60)  # a delivery is under way, and hangs
        await healthy.wait_for(len(records), timeout=60)  # the other subscription is done
        # What must not happen cannot be awaited: give the commit loop (every second) two turns
        # to commit past the hanging delivery, as it would if offsets ran ahead of deliveries.
        await asyncio.sleep(2.5)
        proc.kill()
        proc.wait(10)
        state["hang"] = False
        proc = _start(settings, subs, log, free_port())
        await _await_ids(receiver, {r[2][1][1].decode() for r in records}, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # a SIGTERM stops it cleanly
    finally:
        proc.kill()
        proc.wait(10)
    for request in receiver.requests:
        verify(SECRET_A, request.headers, request.body)
    order = [r.json()["event"]["seq"] for r in receiver.requests
             if r.json()["event"]["incident_id"] == "inc-0" and r is not receiver.requests[0]]  # fmt: skip
    assert order == sorted(order)


async def _await_ids(receiver: Receiver, wanted: set[str], log: Path) -> None:
    deadline = time.monotonic() + 90
    count = len(receiver.requests)
    while not wanted <= {r.headers["webhook-id"] for r in receiver.requests}:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(log.read_text(errors="replace")[-3000:])
        count += 1
        try:
            await receiver.wait_for(count, timeout=left)
        except TimeoutError:
            continue
        await asyncio.sleep(0)


def test_notify_without_a_file_and_replay_of_an_unknown_subscription_exit_2(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([EXE, "notify"], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2 and b"INGEST_SUBSCRIPTIONS_FILE" in done.stderr
    path = tmp_path / "subs.yaml"
    path.write_text("subscriptions:\n  - {id: a, url: 'https://a.example.com/', format: slack}\n")
    env["INGEST_SUBSCRIPTIONS_FILE"] = str(path)
    done = subprocess.run(
        [EXE, "notify", "replay", "--subscription", "b"],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and b"no such subscription in the file: b" in done.stderr
