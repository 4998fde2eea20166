"""`verify` and `replay --check`: silent on an intact store, precise on a tampered one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from ingest_worker.core import canonical
from ingest_worker.core.values import EvidenceInput, Severity
from ingest_worker.store.audit import ChainBreak, ProjectionDiff, replay_check, verify_chains
from ingest_worker.store.incidents import Connection, apply_batch
from tests.factories import incident_input

pytestmark = pytest.mark.integration

KEY = "k-tampered"
ID = canonical.incident_id(KEY)


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A store with 30 incidents, several events each, evidence, both severities."""
    inputs = [
        incident_input(
            KEY if i % 10 == 0 else f"k{i % 30}", signal=f"s{i}", at=(i * 37) % 500,
            severity=Severity.RED if i % 3 == 0 else Severity.YELLOW,
            correlation_keys=(f"deploy:{i % 4}",),
            evidence=(EvidenceInput("log", f"log-{i % 7}"), EvidenceInput("signal", f"s{i}")),
        )
        for i in range(120)
    ]  # fmt: skip
    async with db_pool.acquire() as conn:
        for start in range(0, 120, 40):
            await apply_batch(conn, inputs[start : start + 40])
        yield conn


async def tamper(conn: Connection, statement: str, *args: object) -> None:
    """Change the store behind the write path's back (as the superuser the tests run as)."""
    async with conn.transaction():
        await conn.execute(
            "ALTER TABLE incident_events DISABLE TRIGGER incident_events_append_only"
        )
        await conn.execute(statement, *args)
        await conn.execute("ALTER TABLE incident_events ENABLE TRIGGER incident_events_append_only")


async def test_intact_store_has_no_break_and_no_difference(conn: Connection) -> None:
    assert await verify_chains(conn) == []
    assert await replay_check(conn) == []


async def test_empty_store_is_fine(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        assert await verify_chains(conn) == []
        assert await replay_check(conn) == []


async def test_edited_event_payload_breaks_its_hash_and_its_replay(
    conn: Connection,
) -> None:
    await tamper(
        conn,
        """UPDATE incident_events
        SET payload = jsonb_set(payload, '{snapshot,title}', '"nothing happened"')
        WHERE incident_id = $1 AND seq = 3""",
        ID,
    )
    breaks = await verify_chains(conn)
    assert [(b.incident_id, b.seq) for b in breaks] == [(ID, 3)]
    assert "does not match the recomputed" in str(breaks[0])
    diffs = await replay_check(conn)
    assert [(d.incident_id, d.where, d.stored) for d in diffs] == [
        (ID, "incident_events seq 3 snapshot.title", "nothing happened")
    ]


async def test_edited_event_with_a_recomputed_hash_breaks_the_next_link(
    conn: Connection,
) -> None:
    await tamper(
        conn,
        "UPDATE incident_events SET hash = repeat('a', 64) WHERE incident_id = $1 AND seq = 2",
        ID,
    )
    breaks = await verify_chains(conn)
    assert {(b.seq, b.problem.split()[0]) for b in breaks} == {(2, "hash"), (3, "prev_hash")}


async def test_deleted_event_is_a_gap(conn: Connection) -> None:
    await conn.execute("ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_fkey")
    await tamper(conn, "DELETE FROM incident_events WHERE incident_id = $1 AND seq = 2", ID)
    breaks = await verify_chains(conn)
    assert [b.seq for b in breaks] == [3, 3]
    assert "where 2 was expected" in str(breaks[0])
    assert "does not link" in str(breaks[1])


async def test_edited_incident_row_differs_from_its_replay(conn: Connection) -> None:
    await conn.execute(
        "UPDATE incidents SET title = 'edited', occurrence_count = 99 WHERE id = $1", ID
    )
    diffs = await replay_check(conn)
    assert sorted((d.where, d.stored) for d in diffs) == [
        ("incidents.occurrence_count", 99), ("incidents.title", "edited"),
    ]  # fmt: skip
    assert all(d.incident_id == ID for d in diffs)
    assert str(diffs[0]).startswith(f"incident {ID}: incidents.")
    assert await verify_chains(conn) == []


async def test_wrong_last_seq_is_a_chain_break(conn: Connection) -> None:
    await conn.execute("UPDATE incidents SET last_seq = last_seq + 1 WHERE id = $1", ID)
    breaks = await verify_chains(conn)
    assert [(b.incident_id, b.seq) for b in breaks] == [(ID, None)]
    assert "last_seq" in str(breaks[0])


async def test_missing_and_foreign_evidence_rows_are_reported(conn: Connection) -> None:
    sha = canonical.evidence_sha256(ID, "signal", "s0")
    await conn.execute(
        "DELETE FROM incident_evidence WHERE incident_id = $1 AND sha256 = $2", ID, sha
    )
    forged = canonical.evidence_sha256(ID, "log", "planted")
    await conn.execute(
        """INSERT INTO incident_evidence (incident_id, kind, ref, sha256, observed_at)
           VALUES ($1, 'log', 'planted', $2, now())""",
        ID, forged,
    )  # fmt: skip
    diffs = await replay_check(conn)
    assert sorted((d.where, d.rebuilt, d.stored) for d in diffs) == sorted([
        (f"incident_evidence {sha}", ["signal", "s0"], None),
        (f"incident_evidence {forged}", None, ["log", "planted"]),
    ])  # fmt: skip


async def test_breaks_and_diffs_read_as_sentences() -> None:
    assert (
        str(ChainBreak(ID, 4, "hash x does not match"))
        == f"incident {ID} seq 4: hash x does not match"
    )
    diff = ProjectionDiff(ID, "incidents.severity", "RED", "YELLOW")
    assert str(diff) == f'incident {ID}: incidents.severity: events give "RED", stored "YELLOW"'


async def test_awkward_json_numbers_and_text_keep_hashes_verifiable(db_pool: asyncpg.Pool) -> None:
    """jsonb rewrites some numbers (1e+300 → 1000…0, -0.0 → 0.0): hashes must still verify."""
    odd = {"big": 1e300, "neg_zero": -0.0, "small": 1.5e-7, "tenth": 0.1, "huge_int": 2**70,
           "one": 1.0, "text": "ünïcødé \u2028 \"quoted\"", "nested": [{"e": 1e16}]}  # fmt: skip
    async with db_pool.acquire() as conn:
        await apply_batch(conn, [incident_input(KEY, signal="a", classification=odd)])
        await apply_batch(
            conn, [incident_input(KEY, signal="b", classification={"x": 2.5e20}, at=9)]
        )
        assert await verify_chains(conn) == []
        assert await replay_check(conn) == []


@pytest.mark.parametrize(
    "garbage", ["[1, 2]", '{"changes": 5}', '{"changes": {"evidence_added": [7]}}']
)
async def test_garbage_payloads_are_reported_not_fatal(conn: Connection, garbage: str) -> None:
    await tamper(
        conn,
        "UPDATE incident_events SET payload = $2::jsonb WHERE incident_id = $1 AND seq = 2",
        ID,
        garbage,
    )
    breaks = await verify_chains(conn)
    assert {b.seq for b in breaks} == {2}
    diffs = await replay_check(conn)
    assert "incident_events seq 2 payload" in {d.where for d in diffs}
    assert {d.incident_id for d in diffs} == {ID}
