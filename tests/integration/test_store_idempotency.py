"""SPEC §3 idempotency rules 1 and 2 against a real PostgreSQL: what one batch changes."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from typing import Any

import asyncpg
import pytest

from ingest_worker.core import canonical
from ingest_worker.core.events import GENESIS_HASH
from ingest_worker.core.values import EvidenceInput, Severity
from ingest_worker.store.incidents import (
    Connection,
    Outcome,
    apply_batch,
    init_connection,
    outbox_lane,
)
from tests.factories import event_body_for_publish, incident_input
from tests.support import someone_waits_on_a_lock

pytestmark = pytest.mark.integration

KEY = "deploy_status:prod:deploy-1:2024-01-01T00:00:00Z"
C, U, D = Outcome.CREATED, Outcome.UPDATED, Outcome.DUPLICATE


async def table(conn: Connection, name: str, order: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {name} ORDER BY {order}")]  # noqa: S608


async def everything(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every store table, wall-clock columns included."""
    return {
        "incidents": await table(conn, "incidents", "id"),
        "incident_evidence": await table(conn, "incident_evidence", "incident_id, sha256"),
        "incident_events": await table(conn, "incident_events", "incident_id, seq"),
        "processed_signals": await table(conn, "processed_signals", "incident_key, signal_sha256"),
        "outbox": await table(conn, "outbox", "event_id"),
        "outbox_lanes": await table(conn, "outbox_lanes", "lane"),
    }


async def incident(conn: Connection, key: str = KEY) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM incidents WHERE incident_key = $1", key
    )
    assert row is not None
    return row


async def test_first_signal_creates_an_open_incident_with_deterministic_ids(
    db_pool: asyncpg.Pool,
) -> None:
    signal = incident_input(KEY, at=7, correlation_keys=("deploy:deploy-1", "env:prod"))
    async with db_pool.acquire() as conn:
        result = await apply_batch(conn, [signal])
        row = await incident(conn)
        events = await conn.fetch("SELECT * FROM incident_events")
    assert result.outcomes == (C,)
    assert result.events_written == 1
    assert row["id"] == canonical.incident_id(KEY)
    assert row["status"] == "OPEN"
    assert row["occurrence_count"] == 1
    assert row["severity"] == "RED"
    assert row["first_seen_at"] == row["last_seen_at"] == signal.signal_time
    assert row["correlation_keys"] == ["deploy:deploy-1", "env:prod"]
    [event] = events
    assert event["id"] == canonical.event_id(row["id"], 1)
    assert (event["seq"], event["type"], event["prev_hash"]) == (
        1,
        "incident.created",
        GENESIS_HASH,
    )
    assert event["occurred_at"] == signal.signal_time


async def test_same_batch_applied_twice_changes_nothing_the_second_time(
    db_pool: asyncpg.Pool,
) -> None:
    batch = [incident_input(KEY, signal=f"s{i}", at=i) for i in range(3)]
    batch += [incident_input(f"runner:run-{i}:build:failure", signal="x") for i in range(3)]
    async with db_pool.acquire() as conn:
        first = await apply_batch(conn, batch)
        before = await everything(conn)
        second = await apply_batch(conn, batch)
        after = await everything(conn)
    assert first.outcomes == (C, U, U, C, C, C)
    assert second.outcomes == (D,) * 6
    assert second.events_written == 0
    assert after == before  # not even updated_at moved


async def test_redelivered_signal_in_a_later_batch_is_a_duplicate(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [incident_input(KEY, signal="a")])
        before = await everything(conn)
        result = await apply_batch(conn, [incident_input(KEY, signal="a")])
        assert await everything(conn) == before
    assert result == type(result)((D,), 0)


async def test_repeated_signal_inside_one_batch_counts_once(db_pool: asyncpg.Pool) -> None:
    a = incident_input(KEY, signal="a")
    async with db_pool.acquire() as conn:
        result = await apply_batch(conn, [a, a, incident_input(KEY, signal="b"), a])
        row = await incident(conn)
    assert result.outcomes == (C, D, U, D)
    assert row["occurrence_count"] == 2


async def test_same_key_five_times_in_one_batch_gives_one_created_and_four_updated(
    db_pool: asyncpg.Pool,
) -> None:
    batch = [incident_input(KEY, signal=f"s{i}", at=10 - i) for i in range(5)]
    async with db_pool.acquire() as conn:
        result = await apply_batch(conn, batch)
        row = await incident(conn)
        events = await conn.fetch("SELECT * FROM incident_events ORDER BY seq")
    assert result.outcomes == (C, U, U, U, U)
    assert result.events_written == 5
    assert row["occurrence_count"] == row["last_seq"] == 5
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in events] == ["incident.created"] + ["incident.updated"] * 4
    assert [e["occurred_at"] for e in events] == [s.signal_time for s in batch]
    assert events[0]["prev_hash"] == GENESIS_HASH
    for previous, event in itertools.pairwise(events):
        assert event["prev_hash"] == previous["hash"]


async def test_new_signal_updates_count_seen_times_keys_and_evidence(
    db_pool: asyncpg.Pool,
) -> None:
    shared = EvidenceInput("deploy", "deploy-1", {"deployId": "deploy-1"})
    first = incident_input(KEY, signal="a", at=100, correlation_keys=("deploy:deploy-1",),
                           evidence=(EvidenceInput("log", "a.log"), shared))  # fmt: skip
    second = incident_input(KEY, signal="b", at=50,
                            correlation_keys=("env:prod", "deploy:deploy-1"),
                            evidence=(shared, EvidenceInput("log", "b.log")))  # fmt: skip
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [first])
        result = await apply_batch(conn, [second])
        row = await incident(conn)
        evidence = await conn.fetch("SELECT * FROM incident_evidence ORDER BY ref")
        events = await conn.fetch("SELECT * FROM incident_events ORDER BY seq")
    assert result.outcomes == (U,)
    assert result.events_written == 1
    assert row["occurrence_count"] == 2
    assert row["first_seen_at"] == second.signal_time
    assert row["last_seen_at"] == first.signal_time
    assert row["correlation_keys"] == ["deploy:deploy-1", "env:prod"]
    assert [(e["kind"], e["ref"]) for e in evidence] == [
        ("log", "a.log"), ("log", "b.log"), ("deploy", "deploy-1"),
    ]  # fmt: skip
    for e in evidence:
        assert e["sha256"] == canonical.evidence_sha256(row["id"], e["kind"], e["ref"])
    update = event_body_for_publish(events[1])
    assert update["type"] == "incident.updated"
    assert update["changes"]["occurrence_count"] == {"from": 1, "to": 2}
    assert update["changes"]["correlation_keys_added"] == ["env:prod"]
    b_log = canonical.evidence_sha256(row["id"], "log", "b.log")
    assert update["changes"]["evidence_added"] == [{"sha256": b_log, "kind": "log", "ref": "b.log"}]
    assert update["snapshot"]["occurrence_count"] == 2


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (Severity.RED, Severity.YELLOW, "RED"),
        (Severity.YELLOW, Severity.RED, "RED"),
        (Severity.YELLOW, Severity.YELLOW, "YELLOW"),
    ],
)
async def test_severity_is_the_maximum_and_never_lowered(
    db_pool: asyncpg.Pool, first: Severity, second: Severity, expected: str
) -> None:
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [incident_input(KEY, signal="a", severity=first, at=0)])
        await apply_batch(conn, [incident_input(KEY, signal="b", severity=second, at=60)])
        row = await incident(conn)
    assert row["severity"] == expected


async def test_descriptive_columns_come_from_the_lead_signal(db_pool: asyncpg.Pool) -> None:
    red = incident_input(KEY, signal="red", severity=Severity.RED, at=0, title="red title")
    later_yellow = incident_input(KEY, signal="y", severity=Severity.YELLOW, at=99, title="yellow")
    later_red = incident_input(KEY, signal="red2", severity=Severity.RED, at=5, title="newer red")
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [red, later_yellow])
        assert (await incident(conn))["title"] == "red title"
        await apply_batch(conn, [later_red])
        row = await incident(conn)
    assert row["title"] == "newer red"
    assert (row["lead_signal_at"], row["lead_signal_sha256"]) == (
        later_red.signal_time, later_red.signal_sha256,
    )  # fmt: skip


async def test_one_signal_for_two_keys_applies_to_both(db_pool: asyncpg.Pool) -> None:
    """A workflow_job with two failed steps: one signal identity, two incident keys."""
    step_a = incident_input("runner:1:build:failure", signal="job")
    step_b = incident_input("runner:1:test:failure", signal="job")
    step_b = type(step_b)(**{**_fields(step_b), "signal_sha256": step_a.signal_sha256})
    async with db_pool.acquire() as conn:
        result = await apply_batch(conn, [step_a, step_b])
    assert result.outcomes == (C, C)


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


async def test_every_event_gets_an_outbox_row_in_its_lane(db_pool: asyncpg.Pool) -> None:
    batch = [incident_input(f"k{i}", signal=f"s{j}") for i in range(20) for j in range(2)]
    async with db_pool.acquire() as conn:
        await apply_batch(conn, batch, outbox_lanes=8)
        events = await conn.fetch("SELECT id, incident_id, seq FROM incident_events")
        outbox = {r["event_id"]: r for r in await conn.fetch("SELECT * FROM outbox")}
        lanes = {r["lane"] for r in await conn.fetch("SELECT lane FROM outbox_lanes")}
    assert len(events) == len(outbox) == 40
    for event in events:
        row = outbox[event["id"]]
        assert (row["incident_id"], row["seq"]) == (event["incident_id"], event["seq"])
        assert row["lane"] == outbox_lane(event["incident_id"], 8)
    # The write path creates every lane up front (new episodes and incidents resolved by a
    # recovery's scope are only known inside the transaction).
    assert lanes == set(range(8))
    assert {r["lane"] for r in outbox.values()} <= lanes


async def test_stored_hash_is_recomputable_by_any_reader(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [incident_input(KEY, signal=f"s{i}") for i in range(3)])
        rows = await conn.fetch(
            "SELECT payload::text AS payload, prev_hash, hash FROM incident_events"
        )
    for row in rows:
        text = canonical.canonical_json(json.loads(row["payload"])) + row["prev_hash"]
        assert hashlib.sha256(text.encode()).hexdigest() == row["hash"]


async def test_publish_body_is_the_payload_plus_hash_with_or_without_a_jsonb_codec(
    database_url: str,
) -> None:
    plain = await asyncpg.connect(database_url)
    decoded = await asyncpg.connect(database_url)
    try:
        await init_connection(decoded)
        await apply_batch(decoded, [incident_input(KEY)])  # the store works with the codec too
        from_text = event_body_for_publish(await plain.fetchrow("SELECT * FROM incident_events"))
        from_codec = event_body_for_publish(await decoded.fetchrow("SELECT * FROM incident_events"))
    finally:
        await plain.close()
        await decoded.close()
    assert from_text == from_codec
    assert from_text["hash"] != from_text["prev_hash"] == GENESIS_HASH
    assert {"id", "type", "seq", "occurred_at", "changes", "snapshot"} <= from_text.keys()


async def test_outbox_publisher_is_notified_after_commit_only_when_events_were_written(
    database_url: str,
) -> None:
    listener = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    notified: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("ingest_outbox", lambda *args: notified.put_nowait(args[3]))
        await apply_batch(writer, [incident_input(KEY, signal=f"s{i}") for i in range(300)])
        assert await asyncio.wait_for(notified.get(), 5) == ""  # the store's notification
        await apply_batch(writer, [incident_input(KEY, signal="s1")])  # a duplicate
        # Notifications of one session arrive in commit order: a later sentinel arriving first
        # means the duplicate batch notified nothing.
        await writer.execute("SELECT pg_notify('ingest_outbox', 'sentinel')")
        assert await asyncio.wait_for(notified.get(), 5) == "sentinel"
    finally:
        await listener.close()
        await writer.close()


async def test_failed_batch_rolls_back_everything(db_pool: asyncpg.Pool) -> None:
    bad = incident_input("k-bad", classification={"value": float("nan")})
    async with db_pool.acquire() as conn:
        with pytest.raises(ValueError):
            await apply_batch(
                conn, [incident_input(f"k{i}", signal="s") for i in range(300)] + [bad]
            )
        assert sum(len(rows) for rows in (await everything(conn)).values()) == 0
        assert (await apply_batch(conn, [incident_input("k1", signal="s")])).outcomes == (C,)


async def test_empty_batch(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        result = await apply_batch(conn, [])
    assert (result.outcomes, result.events_written) == ((), 0)


async def _wait_until_blocked_on_a_lock(conn: Connection, task: asyncio.Task[Any]) -> None:
    """Until another backend of this database waits on a lock (the batch reached the table)."""
    async with asyncio.timeout(30):
        while not await someone_waits_on_a_lock(conn):
            assert not task.done(), "the batch finished without touching the locked table"
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "table", ["processed_signals", "incidents", "incident_evidence", "incident_events", "outbox"]
)
async def test_cancelled_batch_commits_nothing(db_pool: asyncpg.Pool, table: str) -> None:
    """A batch cancelled at the statement that writes `table` (held there by a lock) leaves no
    row in any table, and the same inputs apply normally afterwards."""
    batch = [incident_input(f"k{i}", signal="s") for i in range(3000)]
    async with db_pool.acquire() as blocker, db_pool.acquire() as conn, blocker.transaction():
        await blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(apply_batch(conn, batch))
        await _wait_until_blocked_on_a_lock(blocker, task)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with db_pool.acquire() as conn:
        assert sum(len(rows) for rows in (await everything(conn)).values()) == 0
        assert (await apply_batch(conn, batch[:10])).outcomes == (C,) * 10
