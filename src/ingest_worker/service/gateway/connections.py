"""Connection limits below the application: uvicorn's own (concurrency, keep-alive), a header
deadline it lacks, and the header size limit.

uvicorn closes an idle keep-alive connection, but a connection that opens and then sends its
request line and headers slowly (or never) is held for ever, and every such connection counts
against `limit_concurrency`: a few hundred of them would refuse everyone else. Here a connection
gets `header_timeout` seconds from its opening, or from its previous answer, to complete its
headers; then it is answered 408, closed, and counted. The body has its own deadline in the
application (`intake.Gateway.read_body`).

The HTTP parser is httptools (llhttp, in C) when it is installed, else h11 (pure Python, about
three times its CPU per request). With h11 the header size limit is h11's own
(`h11_max_incomplete_event_size`); with httptools it is counted here: a request whose line and
headers exceed `max_header_bytes` is refused (431 while they are still arriving, 400 once the
parser has them) and its connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; h11 is the fallback
    HttpToolsProtocol = None

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 75\r\n\r\n"
    b'{"reason":"header_timeout","message":"the request headers did not arrive"}\n'
)
assert len(_TIMEOUT_RESPONSE.split(b"\r\n\r\n", 1)[1]) == 75
_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 82\r\n\r\n"
    b'{"reason":"too_large","message":"the request line and headers are over the limit"}'
)
assert len(_TOO_LARGE_RESPONSE.split(b"\r\n\r\n", 1)[1]) == 82


class HeadersTooLarge(Exception):
    """Raised from the parser's callbacks: the parser fails the request (400) and closes."""


class _HeaderDeadline:
    """The header deadline, over one of uvicorn's HTTP protocol classes."""

    header_timeout: float
    on_timeout: Callable[[], None]
    _header_timer: asyncio.TimerHandle | None = None
    _seen_cycle: Any = None
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._header_timer is None:
            self._arm()  # the first bytes of a next request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # the headers arrived: the body has its own deadline
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _idle(self) -> bool:
        """Whether nothing has been answered on the connection's current request yet."""
        return True

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return
        self.on_timeout()
        if self._idle():
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_h11(header_timeout: float, on_timeout: Callable[[], None]) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header deadline; `on_timeout` counts each connection closed
    by it."""

    class GuardedH11Protocol(_HeaderDeadline, H11Protocol):  # type: ignore[misc]
        def _idle(self) -> bool:
            return bool(self.conn.our_state in (h11.IDLE, h11.DONE))

    GuardedH11Protocol.header_timeout = header_timeout
    GuardedH11Protocol.on_timeout = staticmethod(on_timeout)  # type: ignore[assignment]
    return GuardedH11Protocol


def guarded_httptools(
    header_timeout: float, max_header_bytes: int, on_timeout: Callable[[], None]
) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with a header deadline and the header size limit; None when
    httptools is not installed."""
    if HttpToolsProtocol is None:  # pragma: no cover
        return None

    class GuardedHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):  # type: ignore[misc]
        _in_headers = False
        _arrived = 0  # bytes received while the current request's headers were incomplete
        _parsed = 0  # bytes of its request line and headers the parser has handed over

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers, self._arrived, self._parsed = True, 0, 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def _count(self, size: int) -> None:
            self._parsed += size
            if self._parsed > max_header_bytes:
                raise HeadersTooLarge

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_headers and not self.transport.is_closing():
                self._arrived += len(data)
                if self._arrived > max_header_bytes:  # still arriving: refused at once
                    self._disarm()
                    self.transport.write(_TOO_LARGE_RESPONSE)
                    self.transport.close()

    GuardedHttpToolsProtocol.header_timeout = header_timeout
    GuardedHttpToolsProtocol.on_timeout = staticmethod(on_timeout)  # type: ignore[assignment]
    return GuardedHttpToolsProtocol
