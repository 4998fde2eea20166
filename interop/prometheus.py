"""`make interop`, Prometheus part: the rules under promtool, then a real Prometheus scraping a real worker.

1. Installs Debian's `prometheus` package when `promtool` or `prometheus` is missing (needs root).
2. `promtool check rules`, `promtool test rules`, `promtool check config` of the compose config.
3. Starts `ingest-worker dev` (embedded PostgreSQL + broker + worker, as `make run` does) and, when
   the CLI has a `gateway` command, expects the gateway there too; sends one signal.
4. Starts Prometheus (config generated into a temp dir, storage there too, a free port) scraping
   them and loading deploy/prometheus/rules.yml, then checks through its HTTP API that every target
   is up, that the worker's series exist, and that every rule evaluated without error.

Stdlib only (it runs before the dev dependencies matter). Every process it starts is stopped on
exit, Ctrl-C or SIGTERM. Exit status 0 only when every check passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yml"
COMPOSE_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
EXAMPLE = ROOT / "examples" / "deploy-status-red.jsonl"
EXE = ROOT / ".venv" / "bin" / "ingest-worker"

HTTP_PORT = int(os.environ.get("INTEROP_HTTP_PORT", "8080"))
GATEWAY_PORT = int(os.environ.get("INTEROP_GATEWAY_PORT", "8081"))
KAFKA_PORT = int(os.environ.get("INTEROP_KAFKA_PORT", "9092"))
POSTGRES_PORT = int(os.environ.get("INTEROP_POSTGRES_PORT", "54329"))
DEADLINE = float(os.environ.get("INTEROP_DEADLINE_SECONDS", "120"))


class InteropFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"interop/prometheus: {message}", flush=True)


def fail(message: str) -> None:
    raise InteropFailure(message)


def run(cmd: list[str]) -> None:
    say("$ " + " ".join(cmd))
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        fail(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited with {result.returncode}")


def ensure_prometheus_installed() -> None:
    if shutil.which("promtool") and shutil.which("prometheus"):
        return
    if os.geteuid() != 0:
        fail("promtool/prometheus missing and not root: apt-get install prometheus yourself")
    say("installing Debian's prometheus package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            fail(f"{' '.join(cmd)} failed")
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        fail("the prometheus package installed no promtool/prometheus on PATH")


def port_is_free(port: int, *, wait_seconds: float = 30.0) -> bool:
    """No process listens on `port`. Connections of a run that just ended (TIME_WAIT, a
    PostgreSQL still shutting down) are waited out for up to `wait_seconds`: the servers bind
    with SO_REUSEADDR, so does this check."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except OSError:
        return 0, b""


def wait_for(what: str, check: Callable[[], Any], procs: list[subprocess.Popen[bytes]]) -> Any:
    """Poll `check` until it returns something truthy; fail at the deadline or if a process died."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        for proc in procs:
            if proc.poll() is not None:
                fail(f"{what}: {proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            fail(f"{what}: not after {DEADLINE:.0f}s")
        time.sleep(0.25)


class Processes:
    """The background processes of this run, each in its own process group, stopped in reverse."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen[bytes], int, Path]] = []

    def start(
        self, cmd: list[str], log: Path, env: dict[str, str], stop_signal: int
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((proc, stop_signal, log))
        return proc

    def stop_all(self) -> None:
        for proc, stop_signal, _ in reversed(self.started):
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, stop_signal)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            if proc.poll() is None:
                say(f"{proc.args[0]} did not stop in 30s: SIGKILL to its process group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def tails(self) -> None:
        for proc, _, log in self.started:
            lines = log.read_text(errors="replace").splitlines()[-25:]
            print(f"--- last lines of {log.name} ({proc.args[0]}) ---", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)


def prom_api(base: str, path: str, **params: str) -> Any:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    status, body = http_get(f"{base}{path}{query}")
    if status != 200:
        return None
    payload = json.loads(body)
    return payload["data"] if payload.get("status") == "success" else None


def cli_has(command: str) -> bool:
    result = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, check=False)
    return command in result.stdout.split("{", 1)[-1].split("}", 1)[0].split(",")


def main() -> int:
    ensure_prometheus_installed()
    run(["promtool", "check", "rules", str(RULES)])
    run(["promtool", "test", "rules", str(RULE_TESTS)])
    run(["promtool", "check", "config", str(COMPOSE_PROMETHEUS)])

    if not EXE.exists():
        fail(f"{EXE} missing: run `make install` first")
    with_gateway = cli_has("gateway")
    ports = [HTTP_PORT, KAFKA_PORT, POSTGRES_PORT] + ([GATEWAY_PORT] if with_gateway else [])
    return run_checks(
        "prometheus", ports, lambda procs, workdir: checks(procs, workdir, with_gateway)
    )


def run_checks(name: str, ports: list[int], body: Callable[[Processes, Path], int]) -> int:
    """Run `body` with the given ports free, a work directory and the processes it starts,
    which are stopped (their log tails printed on a failure) whatever happens."""
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        fail(f"ports {busy} are in use (another `make run`?): stop it or set INTEROP_*_PORT")
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix=f"interop-{name}-"))
    try:
        return body(procs, workdir)
    except InteropFailure:
        procs.tails()
        raise
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def dev_environment() -> dict[str, str]:
    """This process's environment without any INGEST_ variable, with `dev` on the interop ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        INGEST_HTTP_PORT=str(HTTP_PORT),
        INGEST_GATEWAY_PORT=str(GATEWAY_PORT),
        INGEST_DEV_KAFKA_PORT=str(KAFKA_PORT),
        INGEST_DEV_POSTGRES_PORT=str(POSTGRES_PORT),
        XDG_RUNTIME_DIR=env.get("XDG_RUNTIME_DIR", tempfile.gettempdir()),
    )
    return env


def checks(procs: Processes, workdir: Path, with_gateway: bool) -> int:
    env = dev_environment()
    say("starting `ingest-worker dev` (embedded PostgreSQL + broker + worker)")
    # SIGINT is its Ctrl-C: it stops the worker, then the embedded services.
    dev = procs.start([str(EXE), "dev"], workdir / "dev.log", env, signal.SIGINT)
    worker = f"http://127.0.0.1:{HTTP_PORT}"
    wait_for("worker /readyz 200", lambda: http_get(f"{worker}/readyz")[0] == 200, [dev])
    say("worker ready")
    targets = {"ingest-worker": f"127.0.0.1:{HTTP_PORT}"}
    if with_gateway:
        gateway = f"http://127.0.0.1:{GATEWAY_PORT}"
        wait_for("gateway /readyz 200", lambda: http_get(f"{gateway}/readyz")[0] == 200, [dev])
        targets["ingest-gateway"] = f"127.0.0.1:{GATEWAY_PORT}"
        say("gateway ready")
    else:
        say("this CLI has no `gateway` command yet: scraping the worker only")

    send = subprocess.run(
        [str(EXE), "send", "--dev", "--quiet", "signals.deploy-status", str(EXAMPLE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if send.returncode != 0:
        fail(f"ingest-worker send failed: {send.stdout}{send.stderr}")

    prom_port = free_port()
    config = {
        # JSON is YAML: no YAML library needed.
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
    run(["promtool", "check", "config", str(workdir / "prometheus.yml")])
    say(f"starting Prometheus on 127.0.0.1:{prom_port}")
    prometheus = procs.start(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--web.enable-lifecycle",
        ],
        workdir / "prometheus.log",
        dict(os.environ),
        signal.SIGTERM,
    )
    base = f"http://127.0.0.1:{prom_port}"
    alive = [dev, prometheus]
    wait_for("Prometheus /-/ready", lambda: http_get(f"{base}/-/ready")[0] == 200, alive)

    def scraped() -> list[dict[str, Any]] | None:
        data = prom_api(base, "/api/v1/targets")
        active = (data or {}).get("activeTargets", [])
        if len(active) != len(targets) or any(t["health"] == "unknown" for t in active):
            return None
        return list(active)

    for target in wait_for("every target scraped once", scraped, alive):
        if target["health"] != "up":
            fail(f"target {target['scrapeUrl']} is {target['health']}: {target.get('lastError')}")
        say(f"target {target['scrapeUrl']} up")

    def series(query: str) -> Callable[[], list[dict[str, Any]] | None]:
        def check() -> list[dict[str, Any]] | None:
            data = prom_api(base, "/api/v1/query", query=query)
            return data["result"] if data and data["result"] else None

        return check

    expectations = {
        'ingest_ready{job="ingest-worker"} == 1': "the worker reports ready",
        "ingest_outbox_backlog": "the outbox backlog gauge",
        "ingest_batch_duration_seconds_count > 0": "at least one batch timed",
        'ingest_signals_total{topic="signals.deploy-status"} > 0': "the signal sent, counted",
        "ingest_consumer_lag": "the consumer lag gauge",
        "ingest_events_published_total > 0": "the incident event published",
    }
    if with_gateway:
        expectations['up{job="ingest-gateway"} == 1'] = "the gateway scraped"
    for query, meaning in expectations.items():
        result = wait_for(f"{meaning} ({query})", series(query), alive)
        say(f"ok: {meaning}: {query} → {len(result)} series")

    expected_rules = sum(
        1 for line in RULES.read_text().splitlines() if line.strip().startswith("- alert:")
    )

    def evaluated() -> list[dict[str, Any]] | None:
        data = prom_api(base, "/api/v1/rules")
        rules = [r for g in (data or {}).get("groups", []) for r in g["rules"]]
        if len(rules) != expected_rules:
            return None
        if any(r.get("lastEvaluation", "").startswith("0001-") for r in rules):
            return None
        return rules

    for rule in wait_for(f"{expected_rules} rules evaluated once", evaluated, alive):
        if rule["health"] != "ok" or rule.get("lastError"):
            fail(f"rule {rule['name']} health {rule['health']}: {rule.get('lastError')}")
        say(f"rule {rule['name']}: health ok, state {rule.get('state')}")

    alerts = (prom_api(base, "/api/v1/alerts") or {}).get("alerts", [])
    firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
    if "IngestReplicaNotReady" in firing:
        fail("IngestReplicaNotReady fires against a ready worker")
    say(
        f"alerts pending or firing on a healthy dev run: {[a['labels']['alertname'] for a in alerts] or 'none'}"
    )
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
