"""`make interop`, Alertmanager part: a real Alertmanager delivering to the gateway of `ingest-worker dev`.

1. Installs Debian's `prometheus-alertmanager` when no Alertmanager binary is on PATH (needs root).
2. Starts `ingest-worker dev` (embedded PostgreSQL + broker + worker + gateway), with a bearer
   token for the alertmanager source (so the real sender's auth is exercised, not dev mode).
3. Starts Alertmanager (config and storage in a temp dir, a free loopback port, clustering off)
   with a webhook receiver pointing at the gateway's /v1/signals/alertmanager, short
   group_wait / group_interval and send_resolved.
4. Posts two alerts to Alertmanager's own API (POST /api/v2/alerts), lets it group and deliver,
   and waits until both incidents exist in PostgreSQL (`ingest-worker incidents --dev --json`).
5. Posts them again with endsAt in the past, and waits until both incidents are RESOLVED.

Stdlib only. Every process it starts is stopped on exit, Ctrl-C or SIGTERM. Exit 0 only when
every check passed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus import (  # the helpers of interop/prometheus.py
    EXE,
    ROOT,
    InteropFailure,
    Processes,
    free_port,
    http_get,
    run_checks,
    wait_for,
)

HTTP_PORT = int(os.environ.get("INTEROP_HTTP_PORT", "8080"))
GATEWAY_PORT = int(os.environ.get("INTEROP_GATEWAY_PORT", "8081"))
KAFKA_PORT = int(os.environ.get("INTEROP_KAFKA_PORT", "9092"))
POSTGRES_PORT = int(os.environ.get("INTEROP_POSTGRES_PORT", "54329"))
TOKEN = "interop-alertmanager-token"  # noqa: S105 - a throwaway token of this run


def say(message: str) -> None:
    print(f"interop/alertmanager: {message}", flush=True)


def fail(message: str) -> None:
    raise InteropFailure(message)


def alertmanager_binary() -> str:
    for name in ("alertmanager", "prometheus-alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0:
        fail("Alertmanager missing and not root: apt-get install prometheus-alertmanager yourself")
    say("installing Debian's prometheus-alertmanager package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus-alertmanager"],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            fail(f"{' '.join(cmd)} failed")
    for name in ("alertmanager", "prometheus-alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    fail("the prometheus-alertmanager package installed no alertmanager binary on PATH")
    raise AssertionError  # unreachable


def post_json(url: str, payload: Any) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alerts(ends_at: datetime, started: datetime) -> list[dict[str, Any]]:
    return [
        {
            "labels": {
                "alertname": "InteropProbeFailure",
                "instance": instance,
                "job": "interop",
                "severity": severity,
            },
            "annotations": {"summary": f"Interop probe failure on {instance}"},
            "startsAt": rfc3339(started),
            "endsAt": rfc3339(ends_at),
            "generatorURL": "http://prometheus.invalid/graph",
        }
        for instance, severity in (("a.example.org", "critical"), ("b.example.org", "warning"))
    ]


def main() -> int:
    binary = alertmanager_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    say(f"using {binary}: {(version.stdout or version.stderr).splitlines()[0]}")
    if not EXE.exists():
        fail(f"{EXE} missing: run `make install` first")
    return run_checks(
        "alertmanager",
        [HTTP_PORT, GATEWAY_PORT, KAFKA_PORT, POSTGRES_PORT],
        lambda procs, workdir: checks(procs, workdir, binary),
    )


def checks(procs: Processes, workdir: Path, binary: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        INGEST_HTTP_PORT=str(HTTP_PORT),
        INGEST_GATEWAY_PORT=str(GATEWAY_PORT),
        INGEST_GATEWAY_TOKENS=json.dumps({"alertmanager": [TOKEN]}),
        INGEST_DEV_KAFKA_PORT=str(KAFKA_PORT),
        INGEST_DEV_POSTGRES_PORT=str(POSTGRES_PORT),
        XDG_RUNTIME_DIR=env.get("XDG_RUNTIME_DIR", tempfile.gettempdir()),
    )
    say("starting `ingest-worker dev` (embedded PostgreSQL + broker + worker + gateway)")
    dev = procs.start([str(EXE), "dev"], workdir / "dev.log", env, signal.SIGINT)
    worker = f"http://127.0.0.1:{HTTP_PORT}"
    gateway = f"http://127.0.0.1:{GATEWAY_PORT}"
    wait_for("worker /readyz 200", lambda: http_get(f"{worker}/readyz")[0] == 200, [dev])
    wait_for("gateway /readyz 200", lambda: http_get(f"{gateway}/readyz")[0] == 200, [dev])
    say("worker and gateway ready")
    unauthenticated = post_json(f"{gateway}/v1/signals/alertmanager", {"version": "4"})
    if unauthenticated != 401:
        fail(f"the gateway answered {unauthenticated} to an unauthenticated alertmanager post")

    port = free_port()
    config = {  # JSON is YAML
        "global": {"resolve_timeout": "10s"},
        "route": {
            "receiver": "ingest-gateway",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "ingest-gateway",
                "webhook_configs": [
                    {
                        "url": f"{gateway}/v1/signals/alertmanager",
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                    }
                ],
            }
        ],
    }
    (workdir / "alertmanager.yml").write_text(json.dumps(config, indent=2))
    say(f"starting Alertmanager on 127.0.0.1:{port}")
    alertmanager = procs.start(
        [
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        workdir / "alertmanager.log",
        dict(os.environ),
        signal.SIGTERM,
    )
    base = f"http://127.0.0.1:{port}"
    alive = [dev, alertmanager]
    wait_for("Alertmanager /-/ready", lambda: http_get(f"{base}/-/ready")[0] == 200, alive)

    started = datetime.now(UTC) - timedelta(seconds=30)
    status = post_json(f"{base}/api/v2/alerts", alerts(started + timedelta(hours=1), started))
    if status != 200:
        fail(f"POST /api/v2/alerts answered {status}")

    def fingerprints() -> list[str] | None:
        code, body = http_get(f"{base}/api/v2/alerts")
        found = sorted(a["fingerprint"] for a in json.loads(body)) if code == 200 else []
        return found if len(found) == 2 else None

    keys = [
        f"alertmanager:{f}" for f in wait_for("Alertmanager holds both alerts", fingerprints, alive)
    ]
    say(f"alerts posted to Alertmanager: {keys}")

    def incidents() -> dict[str, dict[str, Any]]:
        result = subprocess.run(
            [str(EXE), "incidents", "--dev", "--json", "--limit", "100"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        return {row["incidentKey"]: row for row in rows if row["incidentKey"] in keys}

    def opened() -> dict[str, dict[str, Any]] | None:
        found = incidents()
        return found if len(found) == 2 else None

    rows = wait_for("both incidents in PostgreSQL", opened, alive)
    for key, row in sorted(rows.items()):
        say(f"opened: {key} {row['severity']} {row['status']}")
    if {rows[k]["severity"] for k in keys} != {"RED", "YELLOW"}:
        fail(
            f"severities {[rows[k]['severity'] for k in keys]}: expected RED (critical) and YELLOW"
        )

    ended = datetime.now(UTC) - timedelta(seconds=1)
    status = post_json(f"{base}/api/v2/alerts", alerts(ended, started))
    if status != 200:
        fail(f"POST /api/v2/alerts (resolved) answered {status}")
    say("alerts resolved in Alertmanager (endsAt in the past)")

    def resolved() -> dict[str, dict[str, Any]] | None:
        found = incidents()
        return found if all(found.get(k, {}).get("status") == "RESOLVED" for k in keys) else None

    for key, row in sorted(wait_for("both incidents RESOLVED", resolved, alive).items()):
        say(f"resolved: {key} {row['status']}")

    lines = (workdir / "dev.log").read_text(errors="replace")
    if TOKEN in lines:
        fail("the bearer token appears in the logs")
    say("PASSED")
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except InteropFailure as failure:
        say(f"FAILED: {failure}")
        sys.exit(1)
