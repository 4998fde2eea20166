"""Lifecycle verbs through the real worker and broker: one line per outcome, exit 1 when
rejected, `--json` for the receipt, the actor and roles from INGEST_ACTOR / INGEST_ROLES."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from ingest_worker.service.config import Settings
from tests.cli.support import arun_cli, one_error_line, settings_environment
from tests.support import encode, eventually, produce, start_worker

pytestmark = pytest.mark.integration

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
RED = {
    "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
    "signals": {}, "reasons": [], "deployId": "deploy-1",
}  # fmt: skip


@pytest.fixture
async def env(
    make_settings: Callable[..., Settings], db_pool: asyncpg.Pool
) -> AsyncIterator[dict[str, str]]:
    """A running worker with one OPEN incident (KEY), and the CLI's environment for it."""
    settings = make_settings()
    worker = await start_worker(settings)
    try:
        await produce(settings, settings.topic_deploy_status, [encode(RED)])

        async def created() -> bool:
            return bool(await db_pool.fetchval("SELECT count(*) FROM incidents"))

        await eventually(created, what="the incident")
        yield settings_environment(
            settings, INGEST_ACTOR="alice", INGEST_ROLES="ONCALL_ENGINEER,SRE_LEAD"
        )
    finally:
        await worker.stop()


async def test_verbs_print_one_line_per_outcome(env: dict[str, str]) -> None:
    ack = await arun_cli(env, "acknowledge", KEY)
    assert (ack.returncode, ack.stdout, ack.stderr) == (
        0, "applied: OPEN → ACKNOWLEDGED (event #2)\n", ""
    )  # fmt: skip

    refused = await arun_cli(env, "resolve", KEY)
    assert refused.returncode == 1 and refused.stdout == ""
    assert one_error_line(refused) == (
        "rejected: rationale_required — resolve needs --rationale unless the incident is mitigating"
    )

    mitigating = await arun_cli(env, "start-mitigation", KEY)
    assert mitigating.stdout == "applied: ACKNOWLEDGED → MITIGATING (event #3)\n"
    resolved = await arun_cli(env, "resolve", KEY)  # no rationale needed while mitigating
    assert (resolved.returncode, resolved.stdout) == (
        0,
        "applied: MITIGATING → RESOLVED (event #4)\n",
    )
    again = await arun_cli(env, "resolve", KEY)
    assert (again.returncode, again.stdout) == (0, "noop: the incident is already RESOLVED\n")

    severity = await arun_cli(
        env, "change_severity", KEY, "--severity", "YELLOW", "--rationale", "contained"
    )
    assert severity.stdout == "applied: severity RED → YELLOW (event #5)\n", severity.stderr
    note = await arun_cli(env, "annotate", KEY, "--note", "postmortem on Monday")
    assert note.stdout == "applied: note added (event #6)\n"


async def test_json_prints_the_whole_receipt(env: dict[str, str]) -> None:
    result = await arun_cli(env, "acknowledge", KEY, "--json", "--command-id", "cli-json-1")
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert receipt["commandId"] == "cli-json-1" and receipt["outcome"] == "applied"
    assert receipt["status"] == "ACKNOWLEDGED" and receipt["seq"] == 2
    assert receipt["actor"]["id"] == "alice"
    assert receipt["actor"]["roles"] == ["ONCALL_ENGINEER", "SRE_LEAD"]


async def test_a_rejection_names_what_is_missing(env: dict[str, str]) -> None:
    viewer = await arun_cli(env, "acknowledge", KEY, "--role", "VIEWER", "--actor", "bob")
    assert viewer.returncode == 1
    line = one_error_line(viewer)
    assert line.startswith("rejected: not_authorized — acknowledge needs one of the roles ")
    assert "ONCALL_ENGINEER" in line and "(given: VIEWER)" in line

    unknown = await arun_cli(env, "acknowledge", "deploy_status:nowhere")
    assert unknown.returncode == 1
    assert one_error_line(unknown).startswith("rejected: unknown_incident — no incident ")

    not_now = await arun_cli(env, "close", KEY)
    assert not_now.returncode == 1
    assert one_error_line(not_now).startswith(
        "rejected: transition_not_allowed — close does not apply to an incident that is OPEN"
    )


async def test_without_an_actor_or_role_the_cli_says_so_before_publishing(
    env: dict[str, str],
) -> None:
    no_roles = {k: v for k, v in env.items() if k != "INGEST_ROLES"}
    result = await arun_cli(no_roles, "acknowledge", KEY)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "no role given" in line and "INGEST_ROLES" in line and "ONCALL_ENGINEER" in line
    no_actor = {k: v for k, v in env.items() if k != "INGEST_ACTOR"}
    result = await arun_cli(no_actor, "acknowledge", KEY)
    assert result.returncode == 2 and "INGEST_ACTOR" in one_error_line(result)
    # annotate is open to any actor: no role needed
    note = await arun_cli(no_roles, "annotate", KEY, "--note", "looking")
    assert note.stdout == "applied: note added (event #2)\n", note.stderr
