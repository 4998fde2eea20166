"""A stream client's bounded queue: a client that falls behind is cut off, its backlog freed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ingest_worker.service.gateway.read_stream import (
    CUT_OFF,
    StreamEvent,
    StreamFilter,
    Subscriber,
)
from ingest_worker.store.reads import StreamPosition


def event(n: int, *, status: str = "OPEN", severity: str = "RED") -> StreamEvent:
    position = StreamPosition(datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=n), 1)
    return StreamEvent("acme", f"e{n}", position, "incident.created", "{}", str(uuid.UUID(int=n)),
                       status, severity)  # fmt: skip


def test_a_client_behind_by_more_than_its_queue_is_cut_off_and_its_backlog_freed() -> None:
    client = Subscriber("acme", 3)
    for n in range(3):
        client.offer(event(n))
    assert client.queue.qsize() == 3 and not client.cut_off
    client.offer(event(3))
    assert client.cut_off and client.queue.qsize() == 1
    assert client.queue.get_nowait() is CUT_OFF
    client.offer(event(4))  # nothing more is kept for it
    assert client.queue.empty()


def test_a_frame_carries_type_position_and_body() -> None:
    frame = event(7).frame()
    assert frame.startswith("event: incident.created\nid: ")
    assert frame.endswith("\ndata: {}\n\n")
    token = frame.split("\n")[1].removeprefix("id: ")
    assert StreamPosition.parse(token) == event(7).position


def test_the_filter_admits_by_status_severity_and_incident() -> None:
    assert StreamFilter().admits(event(1))
    assert StreamFilter(statuses=frozenset({"OPEN"})).admits(event(1))
    assert not StreamFilter(statuses=frozenset({"RESOLVED"})).admits(event(1))
    assert not StreamFilter(severities=frozenset({"YELLOW"})).admits(event(1))
    only = StreamFilter(incidents=frozenset({str(uuid.UUID(int=2))}))
    assert only.admits(event(2)) and not only.admits(event(1))
