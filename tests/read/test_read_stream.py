"""`GET /v1/stream` over real HTTP, fed by the real worker through `incident.events`: live
events of the caller's tenant only, resumed from PostgreSQL with Last-Event-ID with nothing
lost or repeated, `event: resync` past the retention window, and its filters."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ingest_worker.store.reads import StreamPosition
from tests.read.conftest import ReadSide, auth, deploy

pytestmark = pytest.mark.integration


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: str | None

    @property
    def body(self) -> dict[str, Any]:
        assert self.data is not None
        value: dict[str, Any] = json.loads(self.data)
        return value


class Stream:
    """The frames of an open SSE response (comments skipped, except the opening one)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 20.0) -> Frame:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if fields:
                        return Frame(fields.get("event"), fields.get("id"), fields.get("data"))
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    async def opened(self) -> None:
        """Wait for the opening comment: from here on the client is subscribed."""
        async with asyncio.timeout(20):
            async for line in self._lines:
                if line == ": open":
                    return
        raise AssertionError("the stream ended before it opened")


@asynccontextmanager
async def stream(
    side: ReadSide, who: str, *, params: dict[str, Any] | None = None, last: str | None = None
) -> AsyncIterator[Stream]:
    headers = auth(who) | ({"Last-Event-ID": last} if last else {})
    async with (
        httpx.AsyncClient(base_url=side.url, timeout=httpx.Timeout(30, read=60)) as client,
        client.stream("GET", "/v1/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = Stream(response)
        await frames.opened()
        yield frames


async def test_live_events_reach_only_their_tenant_and_resume_without_loss_or_repeat(
    read_side: ReadSide,
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with stream(read_side, "acme") as acme, stream(read_side, "globex") as globex:
        await read_side.signal("globex", deploy(f"s-{tag}-g"))
        await read_side.signal("acme", deploy(f"s-{tag}-1"))
        first = await acme.next()
        theirs = await globex.next()
    assert first.event == "incident.created" and first.id
    assert first.body["tenant"] == "acme" and f"s-{tag}-1" in first.body["incident_key"]
    assert theirs.body["tenant"] == "globex" and f"s-{tag}-g" in theirs.body["incident_key"]
    # Disconnected: two more incidents of acme, one of globex.
    await read_side.signal("acme", deploy(f"s-{tag}-2"), deploy(f"s-{tag}-3"))
    await read_side.signal("globex", deploy(f"s-{tag}-h"))
    await read_side.await_incidents("acme", 3)
    async with stream(read_side, "acme", last=first.id) as resumed:
        missed = [await resumed.next(), await resumed.next()]
        await read_side.signal("acme", deploy(f"s-{tag}-4"))
        live = await resumed.next()
    deploys = [f.body["incident_key"].split(":")[2] for f in [*missed, live]]
    # The two missed ones share a transaction: their order is the position's tie-break.
    assert sorted(deploys[:2]) == [f"s-{tag}-2", f"s-{tag}-3"] and deploys[2] == f"s-{tag}-4"
    assert {f.body["tenant"] for f in [*missed, live]} == {"acme"}
    positions = [StreamPosition.parse(f.id or "") for f in [first, *missed]]
    assert positions == sorted(positions)


async def test_a_position_older_than_the_retention_gets_one_resync(read_side: ReadSide) -> None:
    old = StreamPosition(9, datetime.now(UTC) - timedelta(days=2), uuid.uuid4(), 1).token()
    async with stream(read_side, "acme", last=old) as resumed:
        frame = await resumed.next()
        assert frame.event == "resync"
        tag = uuid.uuid4().hex[:8]
        await read_side.signal("acme", deploy(f"r-{tag}"))
        after = await resumed.next()
    assert after.event == "incident.created" and f"r-{tag}" in after.body["incident_key"]


async def test_the_stream_filters_by_severity_and_incident(read_side: ReadSide) -> None:
    tag = uuid.uuid4().hex[:8]
    async with stream(read_side, "acme", params={"severity": "YELLOW"}) as yellow:
        await read_side.signal("acme", deploy(f"f-{tag}-red"))
        await read_side.signal("acme", deploy(f"f-{tag}-yellow", status="YELLOW"))
        frame = await yellow.next()
    assert frame.body["snapshot"]["severity"] == "YELLOW" and "yellow" in frame.body["incident_key"]
    red = await read_side.incident_id("acme", f"f-{tag}-red")
    async with stream(read_side, "acme", params={"incident": red}) as one:
        await read_side.signal("acme", deploy(f"f-{tag}-other"))
        await read_side.signal("acme", deploy(f"f-{tag}-red", reason="again"))
        frame = await one.next()
    assert frame.body["incident_id"] == red and frame.event == "incident.updated"


async def test_a_malformed_last_event_id_is_a_400(read_side: ReadSide) -> None:
    async with httpx.AsyncClient(base_url=read_side.url, timeout=30) as client:
        response = await client.get(
            "/v1/stream", headers={**auth("acme"), "Last-Event-ID": "not-a-position"}
        )
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_last_event_id"
