"""Two tenants with identical keys, interleaved in generated ways, never affect each other.

Each example applies a random stream of triggers, recoveries and commands of two tenants (the
same keys, the same commandIds, the same signals), split into mixed batches, then applies each
tenant's part alone, in the same order and batches, to a tenant of its own: every tenant must
end up exactly as its lone twin (but for ids). Each example runs inside a transaction that is
rolled back. The default tenant keeps the ids it had before tenants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_worker.core.canonical import canonical_sha256, incident_id
from ingest_worker.core.incident import episode_id
from ingest_worker.core.values import BatchInput, Command
from ingest_worker.store.audit import replay_check, verify_chains
from ingest_worker.store.incidents import Connection, apply_batch
from tests.factories import BASE_TIME, incident_input, recovery

pytestmark = pytest.mark.integration

TENANTS = ("default", "acme")


def acknowledge(key: int, name: int) -> Command:
    content = {"verb": "acknowledge", "key": key, "name": name}
    return Command(
        command_id=f"c{name}", verb="acknowledge", incident_id=None, incident_key=f"k{key}",
        actor_type="human", actor_id="alice", roles=("ONCALL_ENGINEER",),
        issued_at=BASE_TIME + timedelta(seconds=30), content_sha256=canonical_sha256(content),
    )  # fmt: skip


effects = st.one_of(
    st.builds(
        lambda key, name, at: incident_input(f"k{key}", signal=f"s{name}", at=at),
        st.integers(0, 2), st.integers(0, 4), st.integers(0, 20),
    ),
    st.builds(
        lambda key, name, at: recovery(f"k{key}", signal=f"g{name}", at=at),
        st.integers(0, 2), st.integers(0, 2), st.integers(0, 20),
    ),
    st.builds(acknowledge, st.integers(0, 2), st.integers(0, 2)),
)  # fmt: skip

streams = st.lists(st.tuples(st.sampled_from(TENANTS), effects), min_size=1, max_size=24)
batch_sizes = st.lists(st.integers(1, 8), min_size=1, max_size=4)


class _RollBack(Exception):
    pass


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


def _batches(
    stream: list[tuple[str, BatchInput]], sizes: list[int]
) -> list[list[tuple[str, BatchInput]]]:
    batches, start, turn = [], 0, 0
    while start < len(stream):
        size = sizes[turn % len(sizes)]
        batches.append(stream[start : start + size])
        start, turn = start + size, turn + 1
    return batches


async def _state(conn: Connection, tenant: str) -> dict[str, Any]:
    """A tenant's rows without its ids (which differ by tenant) or wall-clock columns."""

    async def rows(query: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in await conn.fetch(query, tenant))

    return {
        "incidents": await rows(
            """SELECT incident_key, episode, status, severity, occurrence_count, last_seq,
                      first_seen_at, last_seen_at, title, resolved_at, acknowledged_at,
                      reopen_count, previous_incident_id IS NULL
               FROM incidents WHERE tenant = $1"""
        ),
        "events": await rows(
            """SELECT i.incident_key, i.episode, e.seq, e.type, e.occurred_at,
                      e.payload -> 'snapshot' ->> 'status'
               FROM incident_events AS e
               JOIN incidents AS i ON i.tenant = e.tenant AND i.id = e.incident_id
               WHERE e.tenant = $1"""
        ),
        "evidence": await rows(
            """SELECT i.incident_key, i.episode, v.kind, v.ref
               FROM incident_evidence AS v
               JOIN incidents AS i ON i.tenant = v.tenant AND i.id = v.incident_id
               WHERE v.tenant = $1"""
        ),
        "signals": await rows(
            "SELECT incident_key, signal_sha256 FROM processed_signals WHERE tenant = $1"
        ),
        "recoveries": await rows(
            "SELECT scope, signal_sha256, signal_time FROM recoveries WHERE tenant = $1"
        ),
        "receipts": await rows(
            "SELECT command_id, outcome, reason FROM command_receipts WHERE tenant = $1"
        ),
        "results": await rows(
            "SELECT command_id, outcome FROM command_results_outbox WHERE tenant = $1"
        ),
        "outbox": await rows("SELECT seq FROM outbox WHERE tenant = $1"),
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams, sizes=batch_sizes)
async def test_interleaved_tenants_end_as_if_each_were_alone(
    conn: asyncpg.Connection, stream: list[tuple[str, BatchInput]], sizes: list[int]
) -> None:
    try:
        async with conn.transaction():
            batches = _batches(stream, sizes)
            for batch in batches:
                await apply_batch(
                    conn, [e for _, e in batch], tenants=[t for t, _ in batch], outbox_lanes=4
                )
            for tenant in TENANTS:  # each tenant's part alone, in a twin tenant
                for batch in batches:
                    part = [e for t, e in batch if t == tenant]
                    if part:
                        twin = [f"twin-{tenant}"] * len(part)
                        await apply_batch(conn, part, tenants=twin, outbox_lanes=4)
            for tenant in TENANTS:
                assert await _state(conn, tenant) == await _state(conn, f"twin-{tenant}")
                assert await verify_chains(conn, tenant) == []
                assert await replay_check(conn, tenant) == []
            # The default tenant keeps today's ids; another tenant's are its own.
            for tenant in TENANTS:
                for row in await conn.fetch(
                    "SELECT id, incident_key, episode FROM incidents WHERE tenant = $1", tenant
                ):
                    expected = episode_id(row["incident_key"], row["episode"], tenant)
                    assert row["id"] == expected
                    if tenant == "default":
                        name = row["incident_key"]
                        if row["episode"] > 1:
                            name += f"#{row['episode']}"
                        assert row["id"] == incident_id(name)
            raise _RollBack
    except _RollBack:
        pass


async def test_verify_and_replay_cover_every_tenant_or_the_one_asked_for(
    conn: asyncpg.Connection,
) -> None:
    same = [incident_input("k1", signal=f"s{i}", at=i) for i in range(3)]
    await apply_batch(conn, same + same, tenants=["default"] * 3 + ["acme"] * 3)
    assert await verify_chains(conn) == []
    assert await replay_check(conn) == []
    async with conn.transaction():
        await conn.execute(
            "ALTER TABLE incident_events DISABLE TRIGGER incident_events_append_only"
        )
        await conn.execute(
            "UPDATE incident_events SET payload = jsonb_set(payload, '{snapshot,severity}', "
            "'\"YELLOW\"') WHERE tenant = 'acme' AND seq = 2"
        )
        await conn.execute("ALTER TABLE incident_events ENABLE TRIGGER incident_events_append_only")
    acme = episode_id("k1", 1, "acme")
    assert {b.incident_id for b in await verify_chains(conn)} == {acme}
    assert {b.incident_id for b in await verify_chains(conn, "acme")} == {acme}
    assert await verify_chains(conn, "default") == []
    assert {d.incident_id for d in await replay_check(conn)} == {acme}
    assert await replay_check(conn, "default") == []
    assert await replay_check(conn, "globex") == []
