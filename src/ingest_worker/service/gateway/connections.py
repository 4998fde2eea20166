"""Connection limits below the application: uvicorn's own (concurrency, keep-alive), a header
deadline it lacks, and the header size limit.

uvicorn closes an idle keep-alive connection, but a connection that opens and then sends its
request line and headers slowly (or never) is held for ever, and every such connection counts
against `limit_concurrency`: a few hundred of them would refuse everyone else. Here a connection
gets `header_timeout` seconds from its opening, or from its previous answer, to complete its
headers; then it is answered 408, closed, and counted. The body has its own deadline in the
application (`intake.Gateway.read_body`).

The HTTP parser is httptools (llhttp, in C): a request costs much less CPU than with h11, in pure
Python (the benchmark's results have the figures). The header size limit is counted here: a
request whose line and headers exceed `max_header_bytes` is refused (431 while they are still
arriving, 400 once the parser has them) and its connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and the header size limit; the
    limits are set on the subclass `guarded_httptools` makes."""

    header_timeout: float = 0.0
    max_header_bytes: int = 0
    on_timeout: Callable[[], None]
    _header_timer: asyncio.TimerHandle | None = None
    _seen_cycle: Any = None
    _in_headers = False
    _arrived = 0  # bytes received while the current request's headers were incomplete
    _parsed = 0  # bytes of its request line and headers the parser has handed over

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._header_timer is None:
            self._arm()  # the first bytes of a next request on a kept-alive connection
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # the headers arrived: the body has its own deadline
            self._disarm()
        if self._in_headers and not self.transport.is_closing():
            self._arrived += len(data)
            if self._arrived > self.max_header_bytes:  # still arriving: refused at once
                self._disarm()
                self.transport.write(_TOO_LARGE_RESPONSE)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()

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
        if self._parsed > self.max_header_bytes:
            raise HeadersTooLarge

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # an answer is in progress: the body has its own deadline
        self.on_timeout()
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_httptools(
    header_timeout: float, max_header_bytes: int, on_timeout: Callable[[], None]
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a header deadline and the header size limit;
    `on_timeout` counts each connection closed by the deadline."""
    limits = {
        "header_timeout": header_timeout,
        "max_header_bytes": max_header_bytes,
        "on_timeout": staticmethod(on_timeout),
    }
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), limits)
