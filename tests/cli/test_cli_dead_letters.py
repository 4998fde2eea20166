"""`ingest-worker dead-letters` reads what the real worker dead-lettered: reason, where the record
came from, when, the error and the original value; `--json`, `--reason` and `--follow`.
`incidents --json` prints whole incidents with RFC 3339 times."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from datetime import datetime

import asyncpg
import pytest

from ingest_worker.service.config import Settings
from tests.cli.support import CLI, arun_cli, settings_environment
from tests.support import encode, eventually, produce, reading, start_worker

pytestmark = pytest.mark.integration

RED = {
    "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
    "signals": {}, "reasons": [], "deployId": "deploy-1",
}  # fmt: skip
NOT_JSON = b'{"env": "prod", '
NOT_AN_OBJECT = b"[1, 2]"


def rfc3339(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text).tzinfo is not None


async def test_dead_letters_shows_each_refused_record_and_incidents_json_the_incident(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> None:
    settings = make_settings()
    env = settings_environment(settings)
    topic = settings.topic_deploy_status
    worker = await start_worker(settings)
    try:
        await produce(settings, topic, [NOT_JSON, encode(RED), NOT_AN_OBJECT])
        async with reading(settings, settings.topic_dead_letter) as dlq:
            await dlq.read_until(2)

        async def created() -> bool:
            return bool(await db_pool.fetchval("SELECT count(*) FROM incidents"))

        await eventually(created, what="the incident")
    finally:
        await worker.stop()

    text = await arun_cli(env, "dead-letters")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-1] == f"(2 dead letter(s) on {settings.topic_dead_letter})"
    headings = [line for line in lines if not line.startswith(" ") and not line.startswith("(")]
    assert sorted(h.split()[1] for h in headings) == ["invalid_json", "schema_violation"]
    assert all(f"  {topic}/" in h for h in headings)
    assert '  value: {"env": "prod", ' in lines and "  value: [1, 2]" in lines

    only = await arun_cli(env, "dead-letters", "--json", "--reason", "invalid_json")
    (item,) = [json.loads(line) for line in only.stdout.splitlines()]
    assert item["reason"] == "invalid_json" and item["value"] == NOT_JSON.decode()
    assert item["sourceTopic"] == topic
    assert isinstance(item["sourcePartition"], int) and isinstance(item["sourceOffset"], int)
    assert item["error"].startswith("not valid JSON") and rfc3339(item["failedAt"])

    listed = await arun_cli(env, "incidents", "--json")
    assert listed.returncode == 0, listed.stderr
    (incident,) = [json.loads(line) for line in listed.stdout.splitlines()]
    row = await db_pool.fetchrow("SELECT id, title FROM incidents")
    assert incident["id"] == str(row["id"]) and incident["title"] == row["title"]
    assert incident["incidentKey"] == "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
    assert (incident["episode"], incident["status"], incident["severity"]) == (1, "OPEN", "RED")
    assert (incident["env"], incident["source"]) == ("prod", "deploy_status")
    for field in ("firstSeenAt", "lastSeenAt", "createdAt", "updatedAt"):
        assert rfc3339(incident[field]), field
    for field in ("acknowledgedAt", "mitigatedAt", "resolvedAt", "closedAt"):
        assert incident[field] is None


async def test_follow_prints_dead_letters_as_they_come(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    worker = await start_worker(settings)
    follower = await asyncio.to_thread(
        subprocess.Popen,
        [CLI, "dead-letters", "--follow", "--json"],
        env=settings_environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        await produce(settings, settings.topic_deploy_status, [NOT_AN_OBJECT])
        first = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 60)
        assert json.loads(first)["reason"] == "schema_violation"
        await produce(settings, settings.topic_deploy_status, [NOT_JSON])
        second = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 60)
        assert json.loads(second)["reason"] == "invalid_json"
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        await asyncio.to_thread(follower.wait, 30)
        await worker.stop()
