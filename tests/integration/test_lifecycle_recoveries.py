"""SPEC §7.3–§7.4 against the real PostgreSQL: recovery scopes, persisted recoveries, reopen
inside the window, new episodes, and order independence of the newest episode's status.

Each case runs inside a transaction that is rolled back, so every run starts empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.canonical import incident_id
from ingest_worker.core.values import IncidentInput, Recovery
from ingest_worker.sources.decode import decode_record
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import Connection, apply_batch
from tests.factories import incident_input, recovery

pytestmark = pytest.mark.integration

SCOPE = "deploy_status:prod:deploy-1"
KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
HOUR = 3600


class _RollBack(Exception):
    pass


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with db_pool.acquire() as conn:
        yield conn


async def run(
    conn: Connection, batches: Sequence[Sequence[IncidentInput | Recovery]]
) -> dict[str, Any]:
    """Apply the batches to an empty store, audit it, read incidents and events, roll back."""
    result: dict[str, Any] = {}
    try:
        async with conn.transaction():
            for batch in batches:
                await apply_batch(conn, batch, outbox_lanes=4)
            assert await verify_chains(conn) == []
            assert await replay_check(conn) == []
            result["incidents"] = [
                dict(r)
                for r in await conn.fetch(
                    "SELECT id, incident_key, episode, status, resolved_by, reopen_count, "
                    "previous_incident_id, resolved_at, occurrence_count, recovery_scope "
                    "FROM incidents ORDER BY incident_key, episode"
                )
            ]
            result["events"] = [
                dict(r)
                for r in await conn.fetch(
                    "SELECT e.incident_id, i.incident_key, e.seq, e.type, e.hash, "
                    "e.payload->'cause' AS cause FROM incident_events AS e "
                    "JOIN incidents AS i ON i.id = e.incident_id ORDER BY i.incident_key, "
                    "i.episode, e.seq"
                )
            ]
            raise _RollBack
    except _RollBack:
        pass
    return result


def trigger(
    at: int, signal: str | None = None, key: str = KEY, scope: str = SCOPE
) -> IncidentInput:
    return incident_input(key, signal=signal or f"t{at}", at=at, scope=scope)


def statuses(result: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {(r["incident_key"], r["episode"]): r["status"] for r in result["incidents"]}


def types(result: dict[str, Any], key: str = KEY) -> list[str]:
    return [e["type"] for e in result["events"] if e["incident_key"] == key]


async def test_a_recovery_resolves_the_active_incidents_of_its_scope_only(conn: Connection) -> None:
    other_env = "deploy_status:stage:deploy-1:2024-01-01T00:00:00Z"
    other_deploy = "deploy_status:prod:deploy-2:2024-01-01T00:00:00Z"
    result = await run(
        conn,
        [
            [
                trigger(0),
                trigger(0, key=other_env, scope="deploy_status:stage:deploy-1"),
                trigger(0, key=other_deploy, scope="deploy_status:prod:deploy-2"),
            ],
            [recovery(SCOPE, at=60)],
        ],
    )
    assert statuses(result) == {
        (KEY, 1): "RESOLVED",
        (other_env, 1): "OPEN",
        (other_deploy, 1): "OPEN",
    }
    assert types(result) == ["incident.created", "incident.resolved"]
    [row] = [r for r in result["incidents"] if r["incident_key"] == KEY]
    assert row["resolved_by"] == "signal"
    cause = json.loads(result["events"][1]["cause"])
    assert (
        cause["kind"] == "signal" and cause["signal_sha256"] == recovery(SCOPE, at=60).signal_sha256
    )


async def test_a_recovery_older_than_the_newest_trigger_resolves_nothing(conn: Connection) -> None:
    result = await run(conn, [[trigger(0), trigger(120)], [recovery(SCOPE, at=60)]])
    assert statuses(result) == {(KEY, 1): "OPEN"}
    assert types(result) == ["incident.created", "incident.updated"]


async def test_a_trigger_arriving_after_a_newer_recovery_is_born_resolved(conn: Connection) -> None:
    result = await run(conn, [[recovery(SCOPE, at=60)], [trigger(0)]])
    assert statuses(result) == {(KEY, 1): "RESOLVED"}
    assert types(result) == ["incident.created", "incident.resolved"]


async def test_a_late_older_trigger_adds_an_occurrence_and_changes_no_state(
    conn: Connection,
) -> None:
    result = await run(conn, [[trigger(0)], [recovery(SCOPE, at=60)], [trigger(30, signal="late")]])
    assert statuses(result) == {(KEY, 1): "RESOLVED"}
    assert result["incidents"][0]["occurrence_count"] == 2
    assert types(result) == ["incident.created", "incident.resolved", "incident.updated"]


async def test_a_trigger_at_the_instant_of_the_resolving_recovery_reopens(conn: Connection) -> None:
    # A tie counts for the trigger both ways: the recovery at 30 would not have resolved a
    # trigger at 30 had it arrived first, so the trigger at 30 reopens what it resolved.
    one = await run(conn, [[trigger(0)], [recovery(SCOPE, at=30)], [trigger(30)]])
    other = await run(conn, [[trigger(0)], [trigger(30)], [recovery(SCOPE, at=30)]])
    assert statuses(one) == statuses(other) == {(KEY, 1): "OPEN"}


async def test_a_trigger_inside_the_reopen_window_reopens_the_episode(conn: Connection) -> None:
    result = await run(conn, [[trigger(0)], [recovery(SCOPE, at=60)], [trigger(120)]])
    assert statuses(result) == {(KEY, 1): "OPEN"}
    assert result["incidents"][0]["reopen_count"] == 1
    assert result["incidents"][0]["resolved_at"] is None
    assert types(result) == ["incident.created", "incident.resolved", "incident.reopened"]


async def test_a_trigger_outside_the_window_opens_a_new_episode(conn: Connection) -> None:
    result = await run(conn, [[trigger(0)], [recovery(SCOPE, at=60)], [trigger(2 * HOUR)]])
    assert statuses(result) == {(KEY, 1): "RESOLVED", (KEY, 2): "OPEN"}
    first, second = result["incidents"]
    assert first["id"] == incident_id(KEY)
    assert second["id"] == incident_id(f"{KEY}#2")
    assert second["previous_incident_id"] == first["id"]
    assert [e["type"] for e in result["events"] if e["incident_id"] == second["id"]] == [
        "incident.created"
    ]


async def test_redelivered_recoveries_change_nothing(conn: Connection) -> None:
    once = await run(conn, [[trigger(0)], [recovery(SCOPE, at=60)]])
    twice = await run(
        conn,
        [[trigger(0)], [recovery(SCOPE, at=60), recovery(SCOPE, at=60)], [recovery(SCOPE, at=60)]],
    )
    assert twice == once


def _seed(payload: dict[str, Any], topic: str) -> list[IncidentInput | Recovery]:
    effects = decode_record(topic, json.dumps(payload).encode(), max_bytes=1 << 20)
    return [e for e in effects if isinstance(e, IncidentInput | Recovery)]


def _verification(status: str, deploy: str, playbook: str, at: str, run_id: str) -> dict[str, Any]:
    return {
        "runId": run_id, "playbookId": playbook, "playbookVersion": "1", "env": "prod",
        "status": status, "deployId": deploy, "completedAt": at,
    }  # fmt: skip


async def test_verification_passed_resolves_same_deploy_and_playbook_only(conn: Connection) -> None:
    failed = _seed(
        _verification("failed", "d-1", "smoke", "2024-01-01T00:00:00Z", "r1"), "verification"
    )
    other = _seed(
        _verification("failed", "d-1", "load", "2024-01-01T00:00:00Z", "r2"), "verification"
    )
    passed = _seed(
        _verification("passed", "d-1", "smoke", "2024-01-01T00:10:00Z", "r3"), "verification"
    )
    result = await run(conn, [[*failed, *other], passed])
    assert statuses(result) == {
        ("verification:d-1:r1", 1): "RESOLVED",
        ("verification:d-1:r2", 1): "OPEN",
    }


def _step(conclusion: str, step: str, at: str) -> dict[str, Any]:
    return {"runId": "run-1", "stepName": step, "conclusion": conclusion, "completedAt": at}


async def test_runner_success_resolves_the_same_run_and_step_whatever_its_conclusion(
    conn: Connection,
) -> None:
    failure = _seed(_step("failure", "test", "2024-01-01T00:00:00Z"), "runner")
    timeout = _seed(_step("timeout", "test", "2024-01-01T00:01:00Z"), "runner")
    other = _seed(_step("failure", "lint", "2024-01-01T00:00:00Z"), "runner")
    success = _seed(_step("success", "test", "2024-01-01T00:05:00Z"), "runner")
    result = await run(conn, [[*failure, *timeout, *other], success])
    assert statuses(result) == {
        ("runner:run-1:test:failure", 1): "RESOLVED",
        ("runner:run-1:test:timeout", 1): "RESOLVED",
        ("runner:run-1:lint:failure", 1): "OPEN",
    }


PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

effects = st.lists(
    st.one_of(
        st.builds(lambda at: trigger(at), st.integers(0, 40).map(lambda n: n * 30)),
        st.builds(
            lambda at: recovery(SCOPE, signal=f"g{at}", at=at),
            st.integers(0, 40).map(lambda n: n * 30),
        ),
    ),
    min_size=1,
    max_size=8,
)


def _newest_status(result: dict[str, Any]) -> str | None:
    rows = result["incidents"]
    return rows[-1]["status"] if rows else None


@PROPERTY_SETTINGS
@given(stream=effects, data=st.data())
async def test_the_newest_episode_status_does_not_depend_on_arrival_order(
    conn: Connection, stream: list[IncidentInput | Recovery], data: st.DataObject
) -> None:
    reordered = data.draw(st.permutations(stream))
    first = await run(conn, [[item] for item in stream])
    second = await run(conn, [[item] for item in reordered])
    assert _newest_status(second) == _newest_status(first)
    triggers = [i.signal_time for i in stream if isinstance(i, IncidentInput)]
    recoveries = [i.signal_time for i in stream if isinstance(i, Recovery)]
    if triggers:
        resolved = bool(recoveries) and max(recoveries) > max(triggers)
        assert _newest_status(first) == ("RESOLVED" if resolved else "OPEN")


@PROPERTY_SETTINGS
@given(stream=effects, split=st.integers(1, 8))
async def test_the_same_order_gives_byte_identical_events_whatever_the_batches(
    conn: Connection, stream: list[IncidentInput | Recovery], split: int
) -> None:
    one_by_one = await run(conn, [[item] for item in stream])
    batched = await run(conn, [stream[i : i + split] for i in range(0, len(stream), split)])
    assert [(e["incident_id"], e["seq"], e["type"], e["hash"]) for e in batched["events"]] == [
        (e["incident_id"], e["seq"], e["type"], e["hash"]) for e in one_by_one["events"]
    ]
