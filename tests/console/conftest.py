"""The console under test: the real worker (this loop) and two real gateways (threads of their
own) on one fresh database and the session's broker — one protected (tokens, signed sessions),
one under dev (open, the "Tenant" control). Two tenants, `acme` and `globex`, whose signals
carry identical incident keys."""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from ingest_worker.service.console.session import COOKIE
from ingest_worker.service.console.settings import ConsoleSettings
from ingest_worker.service.gateway import GatewaySettings
from ingest_worker.store.migrations import migrate
from tests.conftest import ServiceEndpoints
from tests.console.browser import browser, watched
from tests.gateway.conftest import RunningGateway
from tests.read.conftest import TOKENS, _settings, deploy, principals
from tests.support import eventually, produce, start_worker

SESSION_SECRET = "console-test-session-secret-0123456789abcdef"
#: A token of the credentials file (not of the settings): removable while the gateway runs.
FILE_TOKEN = "tok-acme-from-file-3c9d"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
COMMAND_ID_FIELD = re.compile(r'name="commandId" value="([^"]+)"')

__all__ = [
    "TOKENS", "ConsoleSide", "browser", "browser_like", "console_side", "csrf_of", "deploy",
    "watched",
]  # fmt: skip


def browser_like(base_url: str) -> httpx.AsyncClient:
    """An HTTP client that sends the session cookie back as a browser on http://127.0.0.1
    does (a secure context), though the cookie is `Secure` and httpx keeps those for https."""
    client = httpx.AsyncClient(base_url=base_url, timeout=30)

    async def keep(response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE:
                client.cookies.set(COOKIE, rest.split(";", 1)[0])

    client.event_hooks["response"].append(keep)
    return client


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


@dataclass
class ConsoleSide:
    settings: object
    protected: RunningGateway
    dev: RunningGateway
    admin: asyncpg.Pool
    secrets_file: Path

    @property
    def url(self) -> str:
        return self.protected.url

    @property
    def dev_url(self) -> str:
        return self.dev.url

    async def signal(self, tenant: str, *values: bytes) -> None:
        settings = self.protected.settings
        await produce(
            settings, settings.topic_deploy_status, list(values),
            key=b"k", headers=[("tenant", tenant.encode())],
        )  # fmt: skip

    async def await_incidents(self, tenant: str, count: int) -> None:
        async def there() -> bool:
            found = await self.admin.fetchval(
                "SELECT count(*) FROM incidents WHERE tenant = $1", tenant
            )
            return bool(found >= count)

        await eventually(there, what=f"{count} incident(s) of {tenant}")

    async def incident_id(self, tenant: str, deploy_id: str) -> str:
        value = await self.admin.fetchval(
            "SELECT id FROM incidents WHERE tenant = $1 AND incident_key LIKE $2",
            tenant, f"%:{deploy_id}:%",
        )  # fmt: skip
        assert value is not None
        return str(value)

    async def new_incident(self, tenant: str, deploy_id: str, **fields: object) -> str:
        """Signal a new incident for `tenant` and wait until the worker stored it."""
        await self.signal(tenant, deploy(deploy_id, **fields))  # type: ignore[arg-type]

        async def there() -> bool:
            found = await self.admin.fetchval(
                "SELECT count(*) FROM incidents WHERE tenant = $1 AND incident_key LIKE $2",
                tenant, f"%:{deploy_id}:%",
            )  # fmt: skip
            return bool(found)

        await eventually(there, what=f"incident {deploy_id} of {tenant}")
        return await self.incident_id(tenant, deploy_id)

    async def status_of(self, incident: str) -> str:
        return str(
            await self.admin.fetchval("SELECT status FROM incidents WHERE id = $1::uuid", incident)
        )

    @contextlib.asynccontextmanager
    async def signed_in(self, token_name: str) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client signed in to the protected console with a token (by name, or the
        credentials file's `FILE_TOKEN`)."""
        token = TOKENS.get(token_name, token_name)
        async with browser_like(self.url) as client:
            page = await client.get("/console/sign-in")
            answer = await client.post(
                "/console/sign-in",
                data={"csrf": csrf_of(page.text), "token": token, "next": "/"},
            )
            assert answer.status_code == 303, answer.text
            yield client


def write_secrets(path: Path, *, with_file_token: bool) -> None:
    entries = [{"token": FILE_TOKEN, "tenant": "acme", "actor": "file-bot",
                "roles": ["ONCALL_ENGINEER"], "scopes": ["read"]}] if with_file_token else []  # fmt: skip
    path.write_text(json.dumps({"principals": entries}), encoding="utf-8")


def _gateway(settings: object, *, dev: bool, secrets_file: Path | None = None) -> RunningGateway:
    config = GatewaySettings(
        host="127.0.0.1", port=0, principals=principals(), ensure_topics=True,
        rate_limit_per_second=10_000, rate_limit_burst=10_000, secrets_file=secrets_file,
    )  # fmt: skip
    gateway = RunningGateway(settings, config, dev=dev)  # type: ignore[arg-type]
    gateway.start()
    assert gateway.server is not None
    secret = None if dev else SecretStr(SESSION_SECRET)
    gateway.server.app.state.console_settings = ConsoleSettings(session_secret=secret)
    return gateway


@pytest.fixture(scope="package")
async def console_side(services: ServiceEndpoints) -> AsyncIterator[ConsoleSide]:
    name = f"c_{uuid.uuid4().hex[:16]}"
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
    secrets_file = Path(tempfile.mkdtemp(prefix="console-")) / "secrets.json"
    write_secrets(secrets_file, with_file_token=True)
    protected = _gateway(settings, dev=False, secrets_file=secrets_file)
    dev = _gateway(settings, dev=True)
    side = ConsoleSide(settings, protected, dev, admin, secrets_file)
    try:
        for tenant in ("acme", "globex"):
            await side.signal(
                tenant,
                deploy("d-1", minute=1),
                deploy("d-2", env="staging", minute=2),
                deploy("d-3", status="YELLOW", minute=3),
            )
        await side.await_incidents("acme", 3)
        await side.await_incidents("globex", 3)
        yield side
    finally:
        protected.stop()
        dev.stop()
        await worker.stop()
        await admin.close()
        secrets_file.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            drop = await asyncpg.connect(services.admin_database_url)
            try:
                await drop.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await drop.close()
