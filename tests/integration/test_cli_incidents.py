"""`ingest-worker incidents` with the read API's filters, as users run it: the same query module,
as `ingest_reader` with the tenant set."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.integration.test_cli_audit import run_cli
from tests.read_rows import BASE, Row, insert

pytestmark = pytest.mark.integration


@pytest.fixture
async def rows(database_url: str) -> list[Row]:
    made = [
        Row("acme", "key-1", minute=1, status="OPEN", severity="RED", env="prod",
            title="Checkout DOWN"),
        Row("acme", "key-2", minute=2, status="RESOLVED", severity="RED", env="prod"),
        Row("acme", "key-3", minute=3, status="OPEN", severity="YELLOW", env="staging"),
        Row("globex", "key-1", minute=1, status="OPEN", severity="RED", env="prod"),
        Row("default", "key-9", minute=9, status="OPEN", severity="RED", env="prod"),
    ]  # fmt: skip
    conn = await asyncpg.connect(database_url)
    try:
        await insert(conn, made, recorded=BASE)
    finally:
        await conn.close()
    return made


async def test_incidents_takes_the_read_filters_and_stays_in_its_tenant(
    database_url: str, rows: list[Row]
) -> None:
    listed = await run_cli(
        database_url, "incidents", "--json", "--tenant", "acme", "--status", "OPEN",
        "--severity", "RED", "--env", "prod", "--since", "2026-01-01T00:00:00Z", "--q", "down",
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    found = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [str(rows[0].id)] == [str(f["id"]) for f in found]
    everything = await run_cli(database_url, "incidents", "--json", "--tenant", "acme")
    assert len(everything.stdout.splitlines()) == 3
    default = await run_cli(database_url, "incidents")
    assert "key-9" in default.stdout and "key-1" not in default.stdout
    bad = await run_cli(database_url, "incidents", "--tenant", "Not A Tenant")
    assert bad.returncode == 2 and "not a tenant id" in bad.stderr
    since = await run_cli(database_url, "incidents", "--since", "yesterday")
    assert since.returncode == 2 and "30m" in since.stderr
