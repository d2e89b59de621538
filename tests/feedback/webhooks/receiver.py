"""A real HTTP server on loopback that receives webhooks (a thread of the test), with
faults on demand: answer any status, redirect, stall past the sender's timeout, or
hang up in the middle of the request body."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


#: what the receiver does with one request: a status code, or one of the strings
#: "hang-up-mid-body", "stall" (sleep :attr:`Receiver.stall` then 200), "redirect"
Behaviour = int | str


class Receiver:
    """``url`` takes POSTs; ``script`` (consumed first) then ``default`` decide each
    answer; every request that was read completely is in ``received``."""

    def __init__(self, default: Behaviour = 204) -> None:
        self.default = default
        self.script: list[Behaviour] = []
        self.received: list[Received] = []
        self.stall = 2.0
        self.delay = 0.0
        self.redirect_to = "http://127.0.0.1:9/elsewhere"
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                receiver._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self) -> Behaviour:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        behaviour = self._next()
        length = int(h.headers.get("content-length", "0"))
        if behaviour == "hang-up-mid-body":
            h.rfile.read(max(1, length // 2))
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        body = h.rfile.read(length)
        if len(body) < length:  # the sender went away mid-body (killed): nothing arrived
            h.close_connection = True
            return
        if self.delay:
            time.sleep(self.delay)
        if behaviour == "stall":
            time.sleep(self.stall)
            behaviour = 200
        with self._lock:
            self.received.append(
                Received(h.path, {k.lower(): v for k, v in h.headers.items()}, body)
            )
        if behaviour == "redirect":
            h.send_response(302)
            h.send_header("Location", self.redirect_to)
        else:
            assert isinstance(behaviour, int)
            h.send_response(behaviour)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]

    def wait(self, predicate: Callable[[], bool], limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: gave up waiting ({len(self.received)} received)")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
