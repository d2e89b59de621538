"""Misbehaving DNS servers on loopback, for the "DNS could not answer" paths: one that
never replies and one that answers SERVFAIL to everything."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import dns.message
import dns.rcode
import pytest


def _udp_server(answer: Callable[[bytes], bytes | None]) -> Iterator[str]:
    """A UDP server on loopback replying ``answer(query)`` (nothing for ``None``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            reply = answer(data)
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        sock.close()


def _servfail(query: bytes) -> bytes:
    reply = dns.message.make_response(dns.message.from_wire(query))
    reply.set_rcode(dns.rcode.SERVFAIL)
    return reply.to_wire()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A UDP socket that reads queries and never replies."""
    yield from _udp_server(lambda _query: None)


@pytest.fixture
def servfail_server() -> Iterator[str]:
    """A UDP server that answers every query with SERVFAIL."""
    yield from _udp_server(_servfail)
