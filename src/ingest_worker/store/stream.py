"""The live stream's positions and reads (`sql/stream.sql`).

A position is `(tx, recorded_at, incident_id, seq)`: the id of the transaction that wrote the
event first. Reads serve only the events of transactions below the snapshot's xmin — all ended,
and no transaction can still write under it — so the part of the order a reader has seen never
changes afterwards: resuming after any position it was given misses nothing and repeats nothing,
whatever order concurrent write transactions commit in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asyncpg import Record

from ingest_worker.store.cursors import BadReadRequest
from ingest_worker.store.incidents import Connection
from ingest_worker.store.queries import load_queries

__all__ = ["END", "START", "StreamPosition", "StreamRow", "event_tx", "events_between", "head"]

_SQL = load_queries("stream.sql")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Stands for the transaction id of a three-part position (written before positions carried
#: one): `event_tx` resolves it.
UNRESOLVED_TX = -1


@dataclass(frozen=True, slots=True, order=True)
class StreamPosition:
    """Where an event sits in a tenant's stream: (tx, recorded_at, incident_id, seq)."""

    tx: int
    recorded_at: datetime
    incident_id: uuid.UUID
    seq: int

    @property
    def resolved(self) -> bool:
        return self.tx != UNRESOLVED_TX

    def token(self) -> str:
        micros = (self.recorded_at - _EPOCH) // timedelta(microseconds=1)  # exact, no float
        return f"{self.tx}.{micros}.{self.incident_id.hex}.{self.seq}"

    @classmethod
    def parse(cls, token: str) -> StreamPosition:
        """A position from its token; a three-part token (recorded_at, incident, seq) comes back
        unresolved."""
        try:
            parts = token.strip().split(".")
            if len(parts) == 3:
                parts.insert(0, str(UNRESOLVED_TX))
            tx, micros, incident, seq = parts
            moment = _EPOCH + timedelta(microseconds=int(micros))
            position = cls(int(tx), moment, uuid.UUID(hex=incident), int(seq))
            if position.tx < UNRESOLVED_TX or position.tx >= 2**64 or not 0 <= position.seq < 2**31:
                raise ValueError(token)
            return position
        except (ValueError, OverflowError, OSError):
            raise BadReadRequest(
                "invalid_last_event_id", "Last-Event-ID is not a position of this stream"
            ) from None


START = StreamPosition(0, _EPOCH, uuid.UUID(int=0), 0)
END = StreamPosition(2**64 - 1, datetime(9999, 12, 31, tzinfo=UTC), uuid.UUID(int=2**128 - 1),
                     2**31 - 1)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamRow:
    position: StreamPosition
    type: str
    hash: str
    payload: str


def _position(r: Record) -> StreamPosition:
    return StreamPosition(int(r["tx"]), r["recorded_at"], r["incident_id"], r["seq"])


def _args(position: StreamPosition) -> tuple[str, datetime, uuid.UUID, int]:
    return str(position.tx), position.recorded_at, position.incident_id, position.seq


async def events_between(
    conn: Connection, tenant: str, after: StreamPosition, upto: StreamPosition, limit: int
) -> list[StreamRow]:
    """Up to `limit` final events of `tenant` after `after` and up to `upto`, in stream order."""
    rows = await conn.fetch(_SQL["events_between"], tenant, *_args(after), *_args(upto), limit)
    return [StreamRow(_position(r), r["type"], r["hash"], r["payload"]) for r in rows]


async def head(conn: Connection, tenant: str) -> StreamPosition:
    """The position of `tenant`'s last final event (`START` when none): the present."""
    r = await conn.fetchrow(_SQL["stream_head"], tenant)
    return START if r is None else _position(r)


async def event_tx(
    conn: Connection, tenant: str, position: StreamPosition
) -> StreamPosition | None:
    """`position` with its transaction id, read from the event it names (None: no such event)."""
    r = await conn.fetchrow(_SQL["event_tx"], tenant, position.incident_id, position.seq)
    if r is None:
        return None
    return StreamPosition(int(r["tx"]), r["recorded_at"], position.incident_id, position.seq)
