"""Connection limits below the application: uvicorn's own (concurrency, keep-alive, header size)
and a header deadline it lacks.

uvicorn closes an idle keep-alive connection, but a connection that opens and then sends its
request line and headers slowly (or never) is held for ever, and every such connection counts
against `limit_concurrency`: a few hundred of them would refuse everyone else. Here a connection
gets `header_timeout` seconds from its opening, or from its previous answer, to complete its
headers; then it is answered 408, closed, and counted. The body has its own deadline in the
application (`intake.Gateway.read_body`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 75\r\n\r\n"
    b'{"reason":"header_timeout","message":"the request headers did not arrive"}\n'
)
assert len(_TIMEOUT_RESPONSE.split(b"\r\n\r\n", 1)[1]) == 75


def guarded_h11(header_timeout: float, on_timeout: Callable[[], None]) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header deadline; `on_timeout` counts each connection closed
    by it."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _seen_cycle: Any = None

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

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return
            on_timeout()
            if self.conn.our_state in (h11.IDLE, h11.DONE):
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    return GuardedH11Protocol
