"""Issue 10 §5: slow clients cannot hold ``notifier serve``'s connections for good.

Against a real ``notifier serve`` on loopback with short limits: slowloris connections
(half a request line, half a head, half a body, or nothing at all) are closed by the
server once their deadline passes, a request in progress gets ``408``; connections
past the limit are answered ``503`` and closed at once; and a normal request is served
all the while.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.conftest import serving

#: generous next to the 1 s deadlines: only a connection the server never closes fails
WAIT = 20.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    env = {
        "NOTIFIER_VAR_DIR": str(tmp_path / "var"),
        "NOTIFIER_SECRET_KEY": "test-secret",
        "NOTIFIER_HTTP_HEADER_TIMEOUT": "1s",
        "NOTIFIER_HTTP_BODY_TIMEOUT": "1s",
        "NOTIFIER_HTTP_MAX_CONNECTIONS": "40",
    }
    with serving(tmp_path, env) as url:
        split = urlsplit(url)
        assert split.hostname and split.port
        yield split.hostname, split.port


def _open(address: tuple[str, int], first: bytes) -> socket.socket:
    sock = socket.create_connection(address, timeout=WAIT)
    if first:
        sock.sendall(first)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    got = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                return got
            except TimeoutError:
                pytest.fail(f"the server kept a stalled connection open; it sent {got!r}")
            if not chunk:
                return got
            got += chunk


SLOW = [
    b"",  # connects and says nothing
    b"GET /healthz HT",  # half a request line
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # half a head
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"event": ',  # half a body
]


def test_slowloris_connections_are_closed_and_normal_requests_still_served(
    server: tuple[str, int],
) -> None:
    host, port = server
    stalled = [_open(server, first) for first in SLOW for _ in range(5)]
    # the service answers while they stall
    r = httpx.get(f"http://{host}:{port}/healthz", timeout=WAIT)
    assert r.status_code == 200
    answers = [_until_closed(sock) for sock in stalled]
    for first, answer in zip([f for f in SLOW for _ in range(5)], answers, strict=True):
        if first:  # a request was under way: the client is told why
            assert answer.startswith(b"HTTP/1.1 408"), (first, answer)
        else:
            assert answer == b""
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=WAIT).status_code == 200


def test_connections_past_the_limit_are_refused_at_once(server: tuple[str, int]) -> None:
    host, port = server
    held = [_open(server, b"") for _ in range(40)]
    extra = [_open(server, b"") for _ in range(10)]
    try:
        refused = [_until_closed(sock) for sock in extra]
        assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused), refused
        assert all(b"retry-after: 1" in answer for answer in refused)
    finally:
        for sock in held:
            sock.close()
    # the held ones are gone: the server serves again
    for _ in range(50):
        r = httpx.get(f"http://{host}:{port}/healthz", timeout=WAIT)
        if r.status_code == 200:
            break
    assert r.status_code == 200


def test_a_request_sent_promptly_over_a_kept_alive_connection_is_served(
    server: tuple[str, int],
) -> None:
    """The deadlines do not cut a normal client: two requests on one connection, the
    second after the first's response (uvicorn's keep-alive is 5 s)."""
    host, port = server
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=WAIT) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        body = b'{"event": "x"}'
        r = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401  # the body arrived whole; no token
