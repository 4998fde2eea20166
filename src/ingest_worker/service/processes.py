"""`INGEST_WORKER_PROCESSES=N`: `ingest-worker run` as N worker processes in one consumer group.

One worker process is one Python thread: it uses one CPU core however many the machine has.
With N > 1, `ingest-worker run` starts N children, each the ordinary worker with
`INGEST_WORKER_PROCESSES=1`, the same settings (the same `INGEST_GROUP_ID`: the group shares
the signal partitions among them, exactly as N replicas would), its own Kafka client id
(`<INGEST_CLIENT_ID>-<i>`) and its own port (`INGEST_HTTP_PORT + i`) for /healthz, /readyz and
/metrics. Every guarantee of several replicas holds (per-incident order, no deadlock between
writers, no duplicate publication: see the guarantees' Scale paragraph).

The parent only supervises: SIGTERM and SIGINT are forwarded to every child, and the parent
exits with the first non-zero exit code among them (0 when all exit 0). A child that exits on
its own (a crash, a fatal configuration error) stops the others and the parent exits non-zero,
so that the orchestrator restarts the whole unit, as it would a single worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

import structlog

from ingest_worker.service.config import Settings

log = structlog.get_logger("ingest_worker.processes")

#: The child: the ordinary `ingest-worker run` (INGEST_WORKER_PROCESSES=1 in its environment).
CHILD_COMMAND = (
    sys.executable,
    "-c",
    "from ingest_worker.service.cli import main; raise SystemExit(main(['run']))",
)
#: How often the parent looks for exited children.
POLL_SECONDS = 0.2
#: Beyond the shutdown grace, how long the parent waits before it kills a child.
KILL_AFTER_GRACE_SECONDS = 5.0


def child_environment(
    settings: Settings, index: int, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Child `index`'s environment: the parent's, one process, its client id and port."""
    env = dict(os.environ if environ is None else environ)
    env["INGEST_WORKER_PROCESSES"] = "1"
    env["INGEST_CLIENT_ID"] = f"{settings.client_id}-{index}"
    env["INGEST_HTTP_PORT"] = str(settings.http_port + index if settings.http_port else 0)
    return env


def supervise(settings: Settings) -> int:
    """Run `settings.worker_processes` workers until a signal or until one exits."""
    count = settings.worker_processes
    children = [
        subprocess.Popen(CHILD_COMMAND, env=child_environment(settings, i)) for i in range(count)
    ]
    log.info("worker_processes_started", processes=count, pids=[c.pid for c in children])
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed: int | None = None
    deadline: float | None = None
    try:
        while any(child.poll() is None for child in children):
            if not stopping and failed is None:
                gone = [c for c in children if c.returncode is not None]
                if gone:
                    failed = gone[0].returncode or 1
                    log.error(
                        "worker_process_exited",
                        pid=gone[0].pid,
                        code=gone[0].returncode,
                        action="stopping the other worker processes",
                    )
                    forward(signal.SIGTERM, None)
            if stopping and deadline is None:
                deadline = time.monotonic() + settings.shutdown_grace_seconds
                deadline += KILL_AFTER_GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(POLL_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [c.returncode for c in children]
    log.info("worker_processes_exited", codes=codes)
    if failed is not None:
        return failed
    return next((code for code in codes if code), 0)
