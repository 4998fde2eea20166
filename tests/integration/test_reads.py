"""The read side's query module against the real PostgreSQL, as `ingest_reader` under row-level
security: filters, sorts, keyset pages, counts, detail, timeline, receipts and the stream's
resume, each for two tenants holding identical incident keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from ingest_worker.store import reads, stream
from ingest_worker.store.cursors import SEVERITY_RANK, BadReadRequest, IncidentFilter
from ingest_worker.store.reads import StreamPosition
from tests.read_rows import BASE, Row, insert

pytestmark = pytest.mark.integration

STATUSES = ("OPEN", "ACKNOWLEDGED", "RESOLVED")


def acme_rows() -> list[Row]:
    return [
        Row(
            "acme", f"key-{i}", minute=i, status=STATUSES[i % 3],
            severity="RED" if i % 2 else "YELLOW", env="prod" if i % 4 < 2 else "staging",
            source="deploy_status" if i % 5 else "runner",
            title=f"Database DOWN {i}" if i % 7 == 0 else f"Deploy failed {i}",
            correlation_keys=[f"svc:{i % 4}"], events=1 + i % 3,
        )
        for i in range(60)
    ]  # fmt: skip


def globex_rows() -> list[Row]:
    # The same keys, other values: anything of globex in an acme answer is a leak.
    return [
        Row("globex", f"key-{i}", minute=i, status="OPEN", severity="RED", env="prod",
            title=f"Database DOWN {i}", correlation_keys=["svc:0"], events=2)
        for i in range(0, 60, 2)
    ]  # fmt: skip


@pytest.fixture
async def store(db_pool: asyncpg.Pool) -> dict[str, list[Row]]:
    rows = {"acme": acme_rows(), "globex": globex_rows()}
    async with db_pool.acquire() as conn:
        await insert(conn, rows["acme"] + rows["globex"], recorded=BASE)
    return rows


def expected(rows: list[Row], flt: IncidentFilter, keep: Callable[[Row], bool]) -> list[str]:
    chosen = [r for r in rows if keep(r)]
    if flt.sort == "-severity":
        chosen.sort(key=lambda r: (SEVERITY_RANK[r.severity], r.last_seen, r.id), reverse=True)
    else:  # created and updated follow last seen in these rows
        chosen.sort(key=lambda r: (r.last_seen, r.id), reverse=True)
    return [str(r.id) for r in chosen]


async def walk(pool: asyncpg.Pool, tenant: str, flt: IncidentFilter, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        async with reads.reading(pool, tenant) as conn:
            page = await reads.list_incidents(conn, tenant, flt, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        seen += [item["id"] for item in page.items]
        assert all(item["tenant"] == tenant for item in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


FILTERS: list[tuple[str, dict[str, Any], Callable[[Row], bool]]] = [
    ("everything", {}, lambda r: True),
    ("status", {"statuses": ("OPEN", "ACKNOWLEDGED")}, lambda r: r.status != "RESOLVED"),
    ("severity", {"severities": ("RED",)}, lambda r: r.severity == "RED"),
    ("source", {"sources": ("runner",)}, lambda r: r.source == "runner"),
    ("env", {"envs": ("staging",)}, lambda r: r.env == "staging"),
    ("correlation key", {"correlation_keys": ("svc:1", "svc:2")},
     lambda r: r.correlation_keys[0] in ("svc:1", "svc:2")),
    ("incident key", {"incident_keys": ("key-3", "key-4")}, lambda r: r.key in ("key-3", "key-4")),
    ("title, any case", {"q": "database down"}, lambda r: "DOWN" in r.title),
    ("since/until on last seen", {"since": BASE + timedelta(minutes=10),
                                  "until": BASE + timedelta(minutes=20)},
     lambda r: 10 <= r.minute < 20),
    ("since on created", {"since": BASE + timedelta(minutes=50, seconds=1),
                          "time_field": "created"}, lambda r: r.minute >= 50),
    ("until on updated", {"until": BASE + timedelta(minutes=5, seconds=2),
                          "time_field": "updated"}, lambda r: r.minute < 5),
    ("across filters", {"statuses": ("OPEN",), "severities": ("RED",), "envs": ("prod",)},
     lambda r: r.status == "OPEN" and r.severity == "RED" and r.env == "prod"),
]  # fmt: skip


@pytest.mark.parametrize("sort", ["-lastSeen", "-created", "-updated", "-severity"])
async def test_each_filter_walked_by_cursor_gives_exactly_the_tenants_matches_in_order(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]], sort: str
) -> None:
    wrong = {}
    for name, params, keep in FILTERS:
        flt = IncidentFilter(sort=sort, **params)
        want = expected(store["acme"], flt, keep)
        assert want, f"{name}: a filter that matches nothing proves little"
        walked = await walk(db_pool, "acme", flt, limit=7)
        async with reads.reading(db_pool, "acme") as conn:
            counted = await reads.count_incidents(conn, "acme", flt)
        if walked != want or counted != len(want):
            wrong[name] = (walked, counted, want)
    assert not wrong


async def test_a_cursor_walk_has_no_duplicate_and_no_gap_while_incidents_arrive(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    flt = IncidentFilter()
    want = expected(store["acme"], flt, lambda r: True)
    seen: list[str] = []
    cursor = None
    arrivals = 0
    while True:
        async with reads.reading(db_pool, "acme") as conn:
            page = await reads.list_incidents(conn, "acme", flt, limit=9, cursor=cursor)
        seen += [item["id"] for item in page.items]
        arrivals += 1  # a newer incident lands above the walk after every page
        async with db_pool.acquire() as conn:
            await insert(conn, [Row("acme", f"new-{arrivals}", minute=100 + arrivals)],
                         recorded=BASE + timedelta(hours=1, minutes=arrivals))  # fmt: skip
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == want


async def test_a_cursor_is_bound_to_its_sort_and_filters(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    flt = IncidentFilter(statuses=("OPEN", "RESOLVED"))
    async with reads.reading(db_pool, "acme") as conn:
        page = await reads.list_incidents(conn, "acme", flt, limit=5)
        assert page.next_cursor is not None
        reordered = IncidentFilter(statuses=("RESOLVED", "OPEN"))  # the same list
        again = await reads.list_incidents(
            conn, "acme", reordered, limit=5, cursor=page.next_cursor
        )
        assert again.items
        for other in (IncidentFilter(statuses=("OPEN",)), IncidentFilter(
                statuses=("OPEN", "RESOLVED"), sort="-created")):  # fmt: skip
            with pytest.raises(BadReadRequest) as refused:
                await reads.list_incidents(conn, "acme", other, cursor=page.next_cursor)
            assert refused.value.reason == "cursor_mismatch"
        for garbage in ("x", "bm90IGpzb24", "WzEsIi1sYXN0U2VlbiJd"):
            with pytest.raises(BadReadRequest) as refused:
                await reads.list_incidents(conn, "acme", flt, cursor=garbage)
            assert refused.value.reason == "invalid_cursor"


async def test_the_detail_holds_evidence_and_episodes_and_only_for_its_tenant(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    first = store["acme"][3]
    second = Row("acme", first.key, minute=200, episode=2)
    async with db_pool.acquire() as conn:
        await insert(conn, [second], recorded=BASE + timedelta(hours=2))
        await conn.execute(
            "UPDATE incidents SET previous_incident_id = $1 WHERE id = $2", first.id, second.id
        )
    async with reads.reading(db_pool, "acme") as conn:
        detail = await reads.get_incident(conn, "acme", first.id)
        later = await reads.get_incident(conn, "acme", second.id, evidence_payloads=True)
        assert await reads.get_incident(conn, "acme", store["globex"][0].id) is None
    assert detail is not None and later is not None
    assert detail["incidentKey"] == first.key and detail["classification"]["error_code"]
    assert detail["episodes"] == {"previous": None, "next": str(second.id)}
    assert later["episodes"] == {"previous": str(first.id), "next": None}
    assert [set(e) for e in detail["evidence"]] == [{"kind", "ref", "sha256", "observedAt"}]
    assert later["evidence"][0]["payload"] == {"detail": "kept"}


async def test_the_timeline_pages_by_seq_filters_by_type_and_stays_in_its_tenant(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    row = next(r for r in store["acme"] if r.events == 3)
    async with reads.reading(db_pool, "acme") as conn:
        everything = await reads.timeline(conn, "acme", row.id)
        after = await reads.timeline(conn, "acme", row.id, after_seq=1, limit=1)
        created = await reads.timeline(conn, "acme", row.id, types=["incident.created"])
        foreign = await reads.timeline(conn, "acme", store["globex"][0].id)
    assert everything is not None and [e["seq"] for e in everything] == [1, 2, 3]
    assert everything[1]["prevHash"] == everything[0]["hash"]
    assert after is not None and [e["seq"] for e in after] == [2]
    assert created is not None and [e["type"] for e in created] == ["incident.created"]
    assert foreign is None


async def test_receipts_with_the_same_command_id_are_each_tenants_own(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    async with db_pool.acquire() as conn:
        for tenant, outcome in (("acme", "noop"), ("globex", "rejected")):
            await conn.execute(
                "INSERT INTO command_receipts (tenant, command_id, content_sha256, type, "
                "outcome, reason, issued_at, result) VALUES ($1, 'c-1', 'x', 'acknowledge', $2, "
                "$3, now(), $4)",
                tenant, outcome, "stale" if outcome == "rejected" else None,
                '{"status": "OPEN", "seq": 3}',
            )  # fmt: skip
    async with reads.reading(db_pool, "acme") as conn:
        mine = await reads.get_receipt(conn, "acme", "c-1")
        assert await reads.get_receipt(conn, "acme", "c-2") is None
    async with reads.reading(db_pool, "globex") as conn:
        theirs = await reads.get_receipt(conn, "globex", "c-1")
    assert mine is not None and mine["outcome"] == "noop" and mine["status"] == "OPEN"
    assert mine["eventSeq"] is None  # only an applied command wrote an event
    assert theirs is not None and theirs["reason"] == "stale"


async def test_the_stream_resumes_in_recording_order_within_its_tenant(
    db_pool: asyncpg.Pool, store: dict[str, list[Row]]
) -> None:
    async with reads.reading(db_pool, "acme") as conn:
        first = await stream.events_between(conn, "acme", stream.START, stream.END, 5)
        rest = await stream.events_between(conn, "acme", first[-1].position, stream.END, 1000)
    total = sum(r.events for r in store["acme"])
    positions = [r.position for r in first + rest]
    assert len(positions) == total and positions == sorted(positions)
    ids = {str(r.id) for r in store["acme"]}
    assert {str(p.incident_id) for p in positions} == ids
    assert StreamPosition.parse(positions[3].token()) == positions[3]


async def test_one_pooled_connection_serves_both_tenants_in_turn_without_leaking(
    database_url: str, store: dict[str, list[Row]]
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        flt = IncidentFilter(q="database")
        for tenant in ("acme", "globex", "acme", "globex"):
            async with reads.reading(pool, tenant) as conn:
                page = await reads.list_incidents(conn, tenant, flt, limit=100)
                # Even a query naming the other tenant sees nothing of it.
                other = "globex" if tenant == "acme" else "acme"
                assert await reads.count_incidents(conn, other, IncidentFilter()) == 0
            assert {i["tenant"] for i in page.items} == {tenant}
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL ROLE ingest_reader")
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 0  # no tenant set
    finally:
        await pool.close()
