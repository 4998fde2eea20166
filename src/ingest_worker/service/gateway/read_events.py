"""What a stream client receives: its tenant's events (`StreamEvent`), the filter it asked for,
and the bounded queue it is fed through (`Subscriber`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from ingest_worker.delivery.outbox import event_value
from ingest_worker.store.stream import StreamPosition, StreamRow


@dataclass(frozen=True, slots=True)
class StreamEvent:
    tenant: str
    event_id: str
    position: StreamPosition | None
    type: str
    data: str
    incident_id: str
    status: str | None
    severity: str | None

    @classmethod
    def from_row(cls, tenant: str, row: StreamRow) -> StreamEvent:
        """The event as the topic carries it, at its stream position."""
        data = event_value(row.payload, row.hash, tenant).decode("utf-8")
        return cls.from_body(tenant, json.loads(data), data, row.position)

    @classmethod
    def from_body(
        cls, tenant: str, body: dict[str, Any], data: str, position: StreamPosition | None
    ) -> StreamEvent:
        snapshot = body.get("snapshot") if isinstance(body.get("snapshot"), dict) else {}
        assert isinstance(snapshot, dict)
        return cls(
            tenant=tenant,
            event_id=str(body.get("id", "")),
            position=position,
            type=str(body.get("type", "")),
            data=data,
            incident_id=str(body.get("incident_id", "")),
            status=snapshot.get("status"),
            severity=snapshot.get("severity"),
        )

    def frame(self) -> str:
        lines = [f"event: {self.type}"]
        if self.position is not None:
            lines.append(f"id: {self.position.token()}")
        lines.append(f"data: {self.data}")
        return "\n".join(lines) + "\n\n"


@dataclass(frozen=True, slots=True)
class StreamFilter:
    statuses: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    incidents: frozenset[str] = frozenset()

    def admits(self, event: StreamEvent) -> bool:
        return (
            (not self.statuses or event.status in self.statuses)
            and (not self.severities or event.severity in self.severities)
            and (not self.incidents or event.incident_id in self.incidents)
        )


class _CutOff:
    """Put in a client's queue in place of what it could not keep up with."""


CUT_OFF = _CutOff()


class Subscriber:
    """One connected client: a bounded queue of its tenant's live events."""

    def __init__(self, tenant: str, size: int) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[StreamEvent | _CutOff] = asyncio.Queue(size)
        self.cut_off = False

    def offer(self, event: StreamEvent) -> None:
        if self.cut_off:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """End this client's stream: free what it has not read, then tell it to stop."""
        self.cut_off = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CUT_OFF)
