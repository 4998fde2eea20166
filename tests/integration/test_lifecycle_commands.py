"""SPEC §7.2 against the real PostgreSQL: every command outcome and reason, permanent receipts,
the outcome queued in the transaction of its effect, and the same command three times."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ingest_worker.core.canonical import canonical_sha256
from ingest_worker.core.values import Command, IncidentInput, Recovery, Severity, SourceTransition
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import BatchResult, Connection, apply_batch
from tests.factories import BASE_TIME, incident_input, recovery

pytestmark = pytest.mark.integration

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
SCOPE = "deploy_status:prod:deploy-1"
ONCALL = ("ONCALL_ENGINEER",)


class _RollBack(Exception):
    pass


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with db_pool.acquire() as conn:
        yield conn


def command(
    verb: str,
    command_id: str | None = None,
    *,
    roles: tuple[str, ...] = ONCALL,
    at: int = 300,
    key: str | None = KEY,
    incident: str | None = None,
    rationale: str | None = None,
    severity: Severity | None = None,
    expected_seq: int | None = None,
    note: str | None = None,
) -> Command:
    content = {"verb": verb, "roles": roles, "at": at, "key": key, "incident": incident,
               "rationale": rationale, "severity": severity, "seq": expected_seq, "note": note}  # fmt: skip
    return Command(
        command_id=command_id or f"c-{verb}-{at}",
        verb=verb,
        incident_id=incident,
        incident_key=None if incident else key,
        actor_type="human",
        actor_id="alice",
        roles=roles,
        issued_at=BASE_TIME + timedelta(seconds=at),
        content_sha256=canonical_sha256({k: str(v) for k, v in content.items()}),
        rationale=rationale,
        note=note,
        severity=severity,
        expected_seq=expected_seq,
    )


async def run(
    conn: Connection,
    batches: Sequence[Sequence[IncidentInput | Recovery | Command | SourceTransition]],
) -> dict[str, Any]:
    results: list[BatchResult] = []
    out: dict[str, Any] = {}
    try:
        async with conn.transaction():
            for batch in batches:
                results.append(await apply_batch(conn, batch, outbox_lanes=4))
            assert await verify_chains(conn) == []
            assert await replay_check(conn) == []
            out["incident"] = dict(
                await conn.fetchrow(
                    "SELECT status, severity, acknowledged_at, resolved_at, resolved_by, "
                    "closed_at, last_seq FROM incidents ORDER BY episode DESC LIMIT 1"
                )
                or {}
            )
            out["receipts"] = [dict(r) for r in await conn.fetch(
                "SELECT command_id, outcome, reason, event_id FROM command_receipts ORDER BY recorded_at, command_id")]  # fmt: skip
            out["results"] = [
                {**dict(r), "payload": json.loads(r["payload"])}
                for r in await conn.fetch(
                    "SELECT id, command_id, outcome, payload::text AS payload "
                    "FROM command_results_outbox ORDER BY created_at"
                )
            ]
            out["types"] = [r["type"] for r in await conn.fetch(
                "SELECT type FROM incident_events ORDER BY incident_id, seq")]  # fmt: skip
            raise _RollBack
    except _RollBack:
        pass
    out["outcomes"] = [[o.value for o in r.outcomes] for r in results]
    return out


async def test_acknowledge_then_resolve_with_a_rationale(conn: Connection) -> None:
    out = await run(
        conn,
        [
            [incident_input(KEY, scope=SCOPE)],
            [command("acknowledge", at=60)],
            [command("resolve", at=120, rationale="rolled back")],
        ],
    )
    assert out["types"] == ["incident.created", "incident.acknowledged", "incident.resolved"]
    assert out["incident"]["status"] == "RESOLVED"
    assert out["incident"]["resolved_by"] == "command"
    assert out["incident"]["acknowledged_at"] == BASE_TIME + timedelta(seconds=60)
    assert [r["outcome"] for r in out["receipts"]] == ["applied", "applied"]
    assert all(r["event_id"] is not None for r in out["receipts"])
    assert [r["outcome"] for r in out["results"]] == ["applied", "applied"]
    assert out["results"][0]["payload"]["status"] == "ACKNOWLEDGED"


@pytest.mark.parametrize(
    ("cmd", "outcome", "reason"),
    [
        (command("acknowledge", roles=("VIEWER",)), "rejected", "not_authorized"),
        (command("resolve"), "rejected", "rationale_required"),
        (command("cancel"), "rejected", "rationale_required"),
        (command("close"), "rejected", "transition_not_allowed"),
        (command("acknowledge", key="no-such-key"), "rejected", "unknown_incident"),
        (
            command("acknowledge", incident="00000000-0000-0000-0000-000000000000"),
            "rejected",
            "unknown_incident",
        ),
        (command("acknowledge", expected_seq=7), "rejected", "stale"),
        (command("acknowledge", expected_seq=1), "applied", None),
        (command("unacknowledge"), "noop", None),  # already OPEN
        (
            command(
                "change_severity", roles=("SRE_LEAD",), rationale="noise", severity=Severity.YELLOW
            ),
            "applied",
            None,
        ),
        (
            command("change_severity", rationale="noise", severity=Severity.YELLOW),
            "rejected",
            "not_authorized",
        ),
        (
            command(
                "change_severity", roles=("SRE_LEAD",), rationale="same", severity=Severity.RED
            ),
            "noop",
            None,
        ),
        (command("annotate", roles=(), note="looked at the dashboard"), "applied", None),
        (command("promote"), "noop", None),  # already OPEN
        (command("archive"), "rejected", "transition_not_allowed"),
        (command("mark_mitigated"), "rejected", "transition_not_allowed"),
        (command("acknowledge", at=-1), "rejected", "issued_before_incident"),
        (command("annotate", at=-86_400, note="n"), "rejected", "issued_before_incident"),
        (command("acknowledge", at=0), "applied", None),  # at the first signal
        (
            replace(command("acknowledge", at=1000), not_after=BASE_TIME + timedelta(seconds=999)),
            "rejected",
            "issued_in_future",
        ),
        (
            replace(command("acknowledge", at=999), not_after=BASE_TIME + timedelta(seconds=999)),
            "applied",
            None,
        ),
    ],
    ids=lambda v: v.command_id if isinstance(v, Command) else str(v),
)
async def test_every_outcome_and_reason(
    conn: Connection, cmd: Command, outcome: str, reason: str | None
) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [cmd]])
    assert [(r["outcome"], r["reason"]) for r in out["receipts"]] == [(outcome, reason)]
    assert [(r["outcome"], r["payload"]["reason"]) for r in out["results"]] == [(outcome, reason)]
    assert len(out["types"]) == (2 if outcome == "applied" else 1)


async def test_acknowledging_twice_is_a_noop(conn: Connection) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [command("acknowledge", "a1")],
                           [command("acknowledge", "a2", at=400)]])  # fmt: skip
    assert [r["outcome"] for r in out["receipts"]] == ["applied", "noop"]


async def test_the_same_command_three_times_has_one_effect_and_one_receipt(
    conn: Connection,
) -> None:
    ack = command("acknowledge", "c-1")
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [ack, ack], [ack]])
    assert out["types"] == ["incident.created", "incident.acknowledged"]
    assert [r["command_id"] for r in out["receipts"]] == ["c-1"]
    # republished with the same ce_id: one pending row (the id is deterministic)
    assert len({r["id"] for r in out["results"]}) == 1
    assert out["outcomes"][1:] == [["applied", "duplicate"], ["duplicate"]]


async def test_a_reused_command_id_with_other_content_is_rejected(conn: Connection) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [command("acknowledge", "c-1")],
                           [command("resolve", "c-1", rationale="x")]])  # fmt: skip
    assert out["types"] == ["incident.created", "incident.acknowledged"]
    assert [r["outcome"] for r in out["receipts"]] == ["applied"]
    assert [r["payload"]["reason"] for r in out["results"]] == [None, "idempotency_key_reused"]


async def test_a_command_resolve_is_never_reopened_by_a_trigger_it_opens_a_new_episode(
    conn: Connection,
) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)],
                           [command("resolve", at=60, rationale="fixed")],
                           [incident_input(KEY, signal="later", at=120, scope=SCOPE)]])  # fmt: skip
    assert out["incident"]["status"] == "OPEN"
    assert out["types"].count("incident.created") == 2


async def test_mitigation_lets_resolve_go_without_rationale_and_close_archives(
    conn: Connection,
) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)],
                           [command("start_mitigation", at=10)], [command("mark_mitigated", at=20)],
                           [command("resolve", at=30)], [command("close", at=40)],
                           [command("archive", at=50)]])  # fmt: skip
    assert out["incident"]["status"] == "ARCHIVED"
    assert [r["outcome"] for r in out["receipts"]] == ["applied"] * 5


async def test_a_source_acknowledgement_uses_the_source_authority(conn: Connection) -> None:
    ack = SourceTransition(incident_key=KEY, source_kind="pagerduty", verb="acknowledge",
                           signal_time=datetime(2024, 1, 1, 0, 1, tzinfo=UTC), signal_sha256="a" * 64,
                           actor="PagerDuty user")  # fmt: skip
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [ack], [ack]])
    assert out["incident"]["status"] == "ACKNOWLEDGED"
    assert out["types"] == ["incident.created", "incident.acknowledged"]
    assert out["outcomes"][1:] == [["applied"], ["duplicate"]]


async def test_a_recovery_resolves_an_acknowledged_incident(conn: Connection) -> None:
    out = await run(conn, [[incident_input(KEY, scope=SCOPE)], [command("acknowledge", at=60)],
                           [recovery(SCOPE, at=120)]])  # fmt: skip
    assert out["incident"]["status"] == "RESOLVED"
    assert out["incident"]["acknowledged_at"] is not None


async def _run_pending(conn: Connection, batches: list[list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        async with conn.transaction():
            for batch in batches:
                await apply_batch(conn, batch, outbox_lanes=4, open_after={"deploy_status": 2})
            assert await replay_check(conn) == []
            out["status"] = await conn.fetchval(
                "SELECT status FROM incidents ORDER BY episode DESC LIMIT 1"
            )
            out["types"] = [r["type"] for r in await conn.fetch(
                "SELECT type FROM incident_events ORDER BY incident_id, seq")]  # fmt: skip
            raise _RollBack
    except _RollBack:
        pass
    return out


async def test_a_source_with_open_after_two_stays_pending_until_its_second_signal(
    conn: Connection,
) -> None:
    first = await _run_pending(conn, [[incident_input(KEY, scope=SCOPE)]])
    assert first["status"] == "PENDING"
    second = await _run_pending(
        conn,
        [
            [incident_input(KEY, scope=SCOPE)],
            [incident_input(KEY, signal="s2", at=10, scope=SCOPE)],
        ],
    )
    assert second["status"] == "OPEN"
    assert second["types"] == ["incident.created", "incident.promoted"]


async def test_a_pending_incident_is_cancelled_by_a_recovery_or_promoted_by_a_command(
    conn: Connection,
) -> None:
    cancelled = await _run_pending(
        conn, [[incident_input(KEY, scope=SCOPE)], [recovery(SCOPE, at=60)]]
    )
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["types"] == ["incident.created", "incident.cancelled"]
    promoted = await _run_pending(conn, [[incident_input(KEY, scope=SCOPE)], [command("promote")]])
    assert promoted["status"] == "OPEN"
    assert promoted["types"] == ["incident.created", "incident.promoted"]
