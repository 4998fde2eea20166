"""A stream client's bounded queue: a client that falls behind is cut off, its backlog freed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from ingest_worker.service.gateway import read_fanout
from ingest_worker.service.gateway.read_fanout import PENDING_SECONDS, Feed
from ingest_worker.service.gateway.read_stream import (
    CUT_OFF,
    StreamEvent,
    StreamFilter,
    Subscriber,
)
from ingest_worker.store.reads import BadReadRequest, StreamPosition
from ingest_worker.store.stream import START


def event(n: int, *, status: str = "OPEN", severity: str = "RED") -> StreamEvent:
    position = StreamPosition(700 + n, datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=n), 1)
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


def test_a_position_token_round_trips_exactly_and_orders_by_transaction_first() -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)  # no float rounding
    position = StreamPosition(2**40 + 3, moment, uuid.UUID(int=5), 7)
    assert StreamPosition.parse(position.token()) == position
    later_tx_earlier_time = StreamPosition(2**40 + 4, datetime(2026, 1, 1, tzinfo=UTC),
                                           uuid.UUID(int=1), 1)  # fmt: skip
    assert position < later_tx_earlier_time


def test_a_three_part_position_parses_unresolved_and_garbage_is_refused() -> None:
    old = StreamPosition.parse(f"1767225600000000.{uuid.UUID(int=9).hex}.4")
    assert not old.resolved and old.incident_id == uuid.UUID(int=9) and old.seq == 4
    for bad in (
        "x",
        "1.2.3.4.5",
        f"-5.1.{uuid.UUID(int=1).hex}.1",
        f"1.1.{uuid.UUID(int=1).hex}.-1",
    ):
        with pytest.raises(BadReadRequest):
            StreamPosition.parse(bad)


def test_a_feed_waits_for_announced_events_until_sent_and_ignores_late_announcements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = Feed(START)
    feed.announce("e1")
    assert feed.waiting()
    feed.sent("e1")
    feed.sent("e2")
    assert not feed.waiting()
    feed.announce("e2")  # its record came after the store handed it out
    assert not feed.waiting()
    feed.announce("e3")  # never handed out (its feed began after it): forgotten in time
    assert feed.waiting()
    later = time.monotonic() + PENDING_SECONDS + 1
    monkeypatch.setattr(read_fanout.time, "monotonic", lambda: later)
    assert not feed.waiting()
