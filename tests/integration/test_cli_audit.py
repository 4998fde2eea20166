"""`ingest-worker verify` and `replay --check` as users run them: exit codes and what they print."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from ingest_worker.store.incidents import apply_batch
from tests.factories import incident_input
from tests.integration.test_audit import tamper

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("ingest-worker"))


async def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run, [CLI, *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_verify_and_replay_check_exit_zero_on_an_intact_store_and_one_on_a_tampered_event(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_batch(conn, [incident_input(signal=f"s{i}", at=i) for i in range(3)])
        verify, replay = (
            await run_cli(database_url, "verify"),
            await run_cli(database_url, "replay", "--check"),
        )
        assert (verify.returncode, replay.returncode) == (0, 0), verify.stdout + replay.stdout
        assert "0 break(s)" in verify.stdout and "0 difference(s)" in replay.stdout

        await tamper(
            conn,
            "UPDATE incident_events SET payload = jsonb_set(payload, '{snapshot,severity}', "
            "'\"YELLOW\"') WHERE seq = 2",
        )
        verify, replay = (
            await run_cli(database_url, "verify"),
            await run_cli(database_url, "replay", "--check"),
        )
    finally:
        await conn.close()
    assert verify.returncode == 1 and "BROKEN" in verify.stdout
    assert replay.returncode == 1 and "DIFF" in replay.stdout
