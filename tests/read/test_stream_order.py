"""The stream's order against the real PostgreSQL: write transactions that commit out of the order
they started in (as the worker's concurrent write batches do) never make a resume skip an event
or send one twice, and the live fan-out hands out the same sequence a resume replays, with no
gap where a resuming client switches from replay to live."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from pydantic import SecretStr

from ingest_worker.service.gateway import read_fanout
from ingest_worker.service.gateway.read_backend import ReadBackend, ReadSettings
from ingest_worker.service.gateway.read_fanout import EventFanout
from ingest_worker.service.gateway.read_stream import OPENED, StreamFilter, tenant_events
from ingest_worker.store import reads, stream
from ingest_worker.store.outbox import NOTIFY_CHANNEL
from ingest_worker.store.stream import START, StreamPosition
from tests.read_rows import BASE, Row, event_body, insert

pytestmark = pytest.mark.integration

TENANT = "acme"


def event_ids(row: Row) -> list[str]:
    return [event_body(row, seq)["id"] for seq in range(1, row.events + 1)]


async def read_after(pool: asyncpg.Pool, after: StreamPosition) -> list[stream.StreamRow]:
    """What a resume from `after` gets now, paged as the replay pages."""
    got: list[stream.StreamRow] = []
    while True:
        async with reads.reading(pool, TENANT) as conn:
            page = await stream.events_between(conn, TENANT, after, stream.END, 2)
        got += page
        if len(page) < 2:
            return got
        after = page[-1].position


class Writer:
    """One write transaction on its own connection, opened (its id taken) and committed on
    demand."""

    def __init__(self, conn: Any, row: Row, recorded_minute: int) -> None:
        self.conn, self.row, self.minute = conn, row, recorded_minute
        self.tx = conn.transaction()

    async def open(self) -> None:
        await self.tx.start()
        await insert(self.conn, [self.row], recorded=BASE + timedelta(minutes=self.minute))

    async def commit(self) -> None:
        await self.tx.commit()


async def test_a_resume_between_out_of_order_commits_misses_nothing(db_pool: asyncpg.Pool) -> None:
    first, second = Row(TENANT, "first", 1, events=2), Row(TENANT, "second", 2)
    async with db_pool.acquire() as ca, db_pool.acquire() as cb:
        a, b = Writer(ca, first, 1), Writer(cb, second, 2)
        await a.open()  # started (and recorded) first ...
        await b.open()
        await b.commit()  # ... committed last
        async with reads.reading(db_pool, TENANT) as conn:
            visible = await conn.fetchval("SELECT count(*) FROM incident_events")
        assert visible == 1  # the later transaction's event is committed and visible ...
        early = await read_after(db_pool, START)
        assert early == []  # ... but not handed out while an older one is open
        await a.commit()
        rest = await read_after(db_pool, early[-1].position if early else START)
    got = [json.loads(r.payload)["id"] for r in rest]
    assert got == event_ids(first) + event_ids(second)
    positions = [r.position for r in rest]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


@pytest.mark.parametrize("seed", range(6))
async def test_resumes_across_random_interleavings_see_every_event_once(
    database_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    rows = [Row(TENANT, f"w{seed}-{n}", n, events=rng.randint(1, 3)) for n in range(6)]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=len(rows) + 1)
    try:
        conns = [await pool.acquire() for _ in rows]
        writers = [Writer(c, r, n) for n, (c, r) in enumerate(zip(conns, rows, strict=True))]
        # a random order in which each transaction opens (takes its id) before it commits
        ordered, closed, running = [], list(writers), []
        while closed or running:
            if closed and (not running or rng.random() < 0.5):
                writer = closed.pop(rng.randrange(len(closed)))
                running.append(writer)
                ordered.append(writer.open)
            else:
                ordered.append(running.pop(rng.randrange(len(running))).commit)
        seen: list[stream.StreamRow] = []
        for step in ordered:
            await step()
            seen += await read_after(pool, seen[-1].position if seen else START)
        for conn in conns:
            await pool.release(conn)
    finally:
        await pool.close()
    ids = [json.loads(r.payload)["id"] for r in seen]
    assert sorted(ids) == sorted(i for r in rows for i in event_ids(r))  # all, each once
    assert [r.position for r in seen] == sorted(r.position for r in seen)


class _Backend:
    """What the stream needs of a gateway: its pool, its settings and its fan-out (whose
    consumer is not started: the test advances the feed itself)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # the rows are recorded at BASE, long ago: a retention that still covers them
        self.config = ReadSettings(stream_keepalive_seconds=30, stream_retention_hours=1e6)
        self.fanout = EventFanout(cast(ReadBackend, self))


async def take(client: AsyncGenerator[Any, None], n: int) -> list[str]:
    out = []
    for _ in range(n):
        item = await asyncio.wait_for(anext(client), 10)
        assert not isinstance(item, str), item
        out.append(item.event_id)
    return out


async def test_live_and_resumed_clients_get_the_same_sequence_with_no_gap_at_the_switch(
    db_pool: asyncpg.Pool,
) -> None:
    backend = _Backend(db_pool)
    everything = StreamFilter()
    first, second, third = (Row(TENANT, f"live-{n}", n, events=2) for n in range(3))
    live = tenant_events(cast(ReadBackend, backend), TENANT, None, everything)
    assert await anext(live) == OPENED  # subscribed at the present: nothing yet
    async with db_pool.acquire() as ca, db_pool.acquire() as cb:
        a, b = Writer(ca, first, 1), Writer(cb, second, 2)
        await a.open()
        await b.open()
        await b.commit()
        assert await backend.fanout.advance(TENANT) == 0  # `second` waits for `first`
        await a.commit()
    assert await backend.fanout.advance(TENANT) == 4
    sent = await take(live, 4)
    assert sent == event_ids(first) + event_ids(second)
    # A client that saw only the first event comes back; `third` commits after it subscribed
    # and before its replay reads: the replay stops where the feed was, the feed brings the rest.
    resume = (await read_after(db_pool, START))[0].position
    resumed = tenant_events(cast(ReadBackend, backend), TENANT, resume, everything)
    assert await anext(resumed) == OPENED
    async with db_pool.acquire() as conn:
        await insert(conn, [third], recorded=BASE + timedelta(minutes=3))
    assert await backend.fanout.advance(TENANT) == 2
    assert await take(resumed, 5) == sent[1:] + event_ids(third)
    assert await take(live, 2) == event_ids(third)
    await live.aclose()
    await resumed.aclose()
    assert backend.fanout.clients == 0


async def test_a_commit_notification_wakes_the_feed_without_the_topic(
    database_url: str, db_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_fanout, "SWEEP_SECONDS", 60.0)  # no sweep within the test
    backend = _Backend(db_pool)
    backend.settings = SimpleNamespace(database_url=SecretStr(database_url))
    fanout = backend.fanout
    # the feeds and the commit listener, not the topic's consumer
    tasks = [asyncio.create_task(fanout._pump()), asyncio.create_task(fanout._listen())]
    try:
        client = tenant_events(cast(ReadBackend, backend), TENANT, None, StreamFilter())
        assert await anext(client) == OPENED
        row = Row(TENANT, "notified", 1, events=1)
        async with db_pool.acquire() as conn, conn.transaction():
            await insert(conn, [row], recorded=BASE)
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        assert await take(client, 1) == event_ids(row)
        await client.aclose()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_three_part_position_of_an_earlier_version_still_resumes(
    db_pool: asyncpg.Pool,
) -> None:
    backend = _Backend(db_pool)
    rows = [Row(TENANT, f"old-{n}", n, events=2) for n in range(2)]
    async with db_pool.acquire() as conn:
        await insert(conn, rows, recorded=BASE)
    first = (await read_after(db_pool, START))[0].position
    micros = (first.recorded_at - START.recorded_at) // timedelta(microseconds=1)
    old = StreamPosition.parse(f"{micros}.{first.incident_id.hex}.{first.seq}")
    assert not old.resolved
    client = tenant_events(cast(ReadBackend, backend), TENANT, old, StreamFilter())
    assert await anext(client) == OPENED
    expected = [json.loads(r.payload)["id"] for r in await read_after(db_pool, first)]
    assert await take(client, 3) == expected
    await client.aclose()
