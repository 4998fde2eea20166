"""The read side under test: the real worker (this loop) and the real gateway (its own thread)
on one fresh database and the session's broker; two tenants, `acme` and `globex`, whose
signals carry identical incident keys, told apart only by the records' `tenant` header."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from ingest_worker.service.config import Settings, topic_field
from ingest_worker.service.gateway import GatewaySettings
from ingest_worker.service.gateway.settings import PrincipalEntry
from ingest_worker.sources.registry import SOURCES
from ingest_worker.store.migrations import migrate
from tests.conftest import ServiceEndpoints
from tests.gateway.conftest import RunningGateway
from tests.support import RunningWorker, encode, eventually, produce, start_worker

TOKENS = {
    "acme": "tok-acme-read-command-51c2",
    "globex": "tok-globex-read-command-90fe",
    "acme-read": "tok-acme-read-only-77aa",
    "acme-ingest": "tok-acme-ingest-only-13bd",
}


def principals() -> list[PrincipalEntry]:
    def entry(name: str, tenant: str, scopes: list[Any]) -> PrincipalEntry:
        return PrincipalEntry(
            token=SecretStr(TOKENS[name]), tenant=tenant, actor=f"{name}-bot",
            roles=["ONCALL_ENGINEER"], scopes=scopes,
        )  # fmt: skip

    return [
        entry("acme", "acme", ["read", "command"]),
        entry("globex", "globex", ["read", "command"]),
        entry("acme-read", "acme", ["read"]),
        entry("acme-ingest", "acme", ["ingest"]),
    ]


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def deploy(
    deploy_id: str, *, status: str = "RED", env: str = "prod", minute: int = 0, reason: str = ""
) -> bytes:
    """A deploy-status signal; another `reason` is another signal of the same incident."""
    return encode({
        "env": env, "status": status, "changedAt": f"2026-01-01T00:{minute:02d}:00Z",
        "signals": {}, "deployId": deploy_id,
        "reasons": [{"code": reason, "severity": "high", "message": reason}] if reason else [],
    })  # fmt: skip


@dataclass
class ReadSide:
    settings: Settings
    gateway: RunningGateway
    worker: RunningWorker
    admin: asyncpg.Pool

    @property
    def url(self) -> str:
        return self.gateway.url

    async def signal(self, tenant: str, *values: bytes) -> None:
        await produce(
            self.settings, self.settings.topic_deploy_status, list(values),
            key=b"k", headers=[("tenant", tenant.encode())],
        )  # fmt: skip

    async def await_incidents(self, tenant: str, count: int) -> None:
        async def there() -> bool:
            found = await self.admin.fetchval(
                "SELECT count(*) FROM incidents WHERE tenant = $1", tenant
            )
            return bool(found >= count)

        await eventually(there, what=f"{count} incident(s) of {tenant}")

    async def incident_id(self, tenant: str, key_part: str) -> str:
        value = await self.admin.fetchval(
            "SELECT id FROM incidents WHERE tenant = $1 AND incident_key LIKE $2",
            tenant, f"%{key_part}%",
        )  # fmt: skip
        assert value is not None
        return str(value)


def _settings(services: ServiceEndpoints, database_url: str) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {topic_field(s): f"{s.topic}.{suffix}" for s in SOURCES}
    values.update(
        kafka_bootstrap_servers=services.bootstrap_servers,
        database_url=database_url,
        group_id=f"ingest-{suffix}",
        topic_dead_letter=f"signals.dlq.{suffix}",
        topic_incident_events=f"incident.events.{suffix}",
        topic_commands=f"incident.commands.{suffix}",
        topic_command_results=f"incident.command-results.{suffix}",
        http_port=0,
        outbox_poll_seconds=0.2,
        log_format="console",
        shutdown_grace_seconds=5.0,
        session_timeout_ms=3000,
    )
    return Settings(**values)


@pytest.fixture(scope="module")
async def read_side(services: ServiceEndpoints) -> AsyncIterator[ReadSide]:
    name = f"r_{uuid.uuid4().hex[:16]}"
    admin_conn = await asyncpg.connect(services.admin_database_url)
    try:
        await admin_conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin_conn.close()
    base, _, _ = services.admin_database_url.rpartition("/")
    url = f"{base}/{name}"
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    settings = _settings(services, url)
    admin = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert admin is not None
    worker = await start_worker(settings)
    config = GatewaySettings(
        host="127.0.0.1", port=0, principals=principals(), ensure_topics=True,
        rate_limit_per_second=10_000, rate_limit_burst=10_000,
    )  # fmt: skip
    gateway = RunningGateway(settings, config).start()
    side = ReadSide(settings, gateway, worker, admin)
    try:
        yield side
    finally:
        gateway.stop()
        await worker.stop()
        await admin.close()
        with contextlib.suppress(Exception):
            drop = await asyncpg.connect(services.admin_database_url)
            try:
                await drop.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await drop.close()
