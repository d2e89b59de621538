"""What ``notifier serve`` allows a client: time to send a request, and connections.

uvicorn closes a connection that sits idle *between* requests (``timeout_keep_alive``),
but not one that sends half a request line and stalls, nor one that drips a body:
1,000 such slowloris connections were held open for good. This protocol (uvicorn's
h11 protocol with deadlines) closes a connection whose request head has not fully
arrived ``header_timeout`` seconds after the server was ready for it, or whose body has
not fully arrived ``body_timeout`` seconds after its head; a partial request gets
``408 Request Timeout`` first. Past ``max_connections`` open connections a new one is
answered ``503`` with ``Retry-After`` and closed at once, so stalled clients cannot
exhaust file descriptors or memory. Header size is bounded by h11 (16 KiB; 431/400).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n"
    b"content-length: 0\r\n\r\n"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head and body and a
    limit on open connections (set the limits with :func:`limits`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: object = None  # the h11 state the deadline is for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline for what the client owes now: a head (IDLE) or a body
        (SEND_BODY); nothing once the request is in."""
        state = self.conn.their_state
        if state is self._waiting:
            return
        self._cancel()
        if self.transport.is_closing():
            return
        if state is h11.IDLE:
            seconds = self.header_timeout
        elif state is h11.SEND_BODY:
            seconds = self.body_timeout
        else:
            return
        self._waiting = state
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])
        if started and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(_TIMEOUT)  # a request under way, no answer yet: say why
        self.logger.info("closing a connection: the request did not arrive in time")
        self.transport.close()


def limits(header_timeout: float, body_timeout: float, max_connections: int) -> type[H11Protocol]:
    """The protocol class with these limits (uvicorn takes a class, not an instance)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_connections": max_connections,
        },
    )
