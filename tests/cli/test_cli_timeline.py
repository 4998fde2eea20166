"""`ingest-worker timeline` as users run it: the events of an incident, or one sentence when
there is no such incident."""

from __future__ import annotations

import json

import asyncpg
import pytest

from ingest_worker.store.incidents import apply_batch
from tests.cli.support import arun_cli, clean_environment, one_error_line
from tests.factories import incident_input

pytestmark = pytest.mark.integration

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"


async def test_timeline_prints_the_events_or_says_there_is_no_such_incident(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_batch(conn, [incident_input(KEY, signal="s1", at=0)])
    finally:
        await conn.close()
    env = clean_environment(INGEST_DATABASE_URL=database_url)

    shown = await arun_cli(env, "timeline", KEY, "--json")
    assert shown.returncode == 0, shown.stderr
    (event,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (event["seq"], event["status"]) == (1, "-> OPEN")

    missing = await arun_cli(env, "timeline", "deploy_status:nowhere")
    assert missing.returncode == 1 and missing.stdout == ""
    assert one_error_line(missing).startswith("error: no incident 'deploy_status:nowhere'")
