"""An open-loop HTTP/1.1 load generator for the gateway: cheap enough not to be what is measured.

Each request has an intended send time (`rate` per second from the start); it is handed to the
first free one of `connections` kept-alive connections, and its latency is counted from that
intended time to the last byte of the answer, so a server that falls behind is charged for the
queue it causes (no coordinated omission). Requests are pre-serialized bytes; the answer is read
by its `Content-Length`. A connection the server closes is reopened for the next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """Per-request latencies (seconds, intended send time → answer) of the answers with status
    `expected`, and the count of every other status (0: no answer: the connection failed)."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.statuses.values())


def request_bytes(path: str, host: str, body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """(status, whether the server keeps the connection) of one request."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, keep = 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    connections: int,
    expected: int = 202,
    on_sent: Callable[[int, float], None] | None = None,
    drain: float = 15.0,
) -> Outcome:
    """Send `requests` at `rate` per second over up to `connections` connections; wait at most
    `drain` seconds after the last one is due, then count what is left unanswered (status -1,
    or 0 for the requests in flight)."""
    outcome = Outcome()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def connection() -> None:
        reader = writer = None
        while (job := await queue.get()) is not None:
            n, due = job
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                status, keep = await _exchange(reader, writer, requests[n])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                status, keep = 0, False
            if status == expected:
                outcome.latencies.append(time.monotonic() - due)
            else:
                outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    began = time.monotonic()
    for n in range(len(requests)):
        due = began + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if on_sent is not None:
            on_sent(n, due)
        queue.put_nowait((n, due))
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=drain)
    outcome.elapsed = time.monotonic() - began
    unanswered = sum(1 for job in _drained(queue) if job is not None)
    if unanswered:
        outcome.statuses[-1] = unanswered
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    in_flight = len(requests) - len(outcome.latencies) - outcome.errors
    if in_flight:
        outcome.statuses[0] = outcome.statuses.get(0, 0) + in_flight
    return outcome


def _drained(queue: asyncio.Queue[tuple[int, float] | None]) -> list[tuple[int, float] | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
