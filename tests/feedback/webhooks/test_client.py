"""The webhook HTTP client against a real server on loopback that answers what each test
scripts (raw bytes: chunked, oversized, close-delimited, interim, malformed answers):
every answer framing is read correctly, connections are reused only when that is
safe, a name is resolved and checked once and the connection goes to the checked
address (Host and TLS SNI keep the name)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from notifier.feedback.client import MAX_BODY
from notifier.feedback.http import Sender
from notifier.feedback.signing import WebhookSecret, new_secret
from notifier.outbox.webhook_model import WebhookJob, WebhookResult

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
#: what the server does with one request: answer these bytes, or "hang-up" (close unanswered)
Script = bytes | str


@dataclass
class Seen:
    connection: int
    head: bytes
    body: bytes


@dataclass
class Server:
    """Reads whole requests (Content-Length bodies) and answers from :attr:`script`."""

    script: list[Script] = field(default_factory=list)
    #: answers for requests after the script is used up
    default: Script = NO_CONTENT
    #: close the connection after every answer
    close_after: bool = False
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.seen.append(Seen(number, head, body))
                answer = self.script.pop(0) if self.script else self.default
                if answer == "hang-up":
                    break
                assert isinstance(answer, bytes)
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def header(self, index: int, name: str) -> str:
        for line in self.seen[index].head.split(b"\r\n")[1:]:
            key, _, value = line.decode().partition(":")
            if key.lower() == name:
                return value.strip()
        raise KeyError(name)


def job(url: str, event: int = 1) -> WebhookJob:
    return WebhookJob(
        id=event,
        endpoint=1,
        event=event,
        attempts=0,
        window_start=0.0,
        url=url,
        secrets=(),
        type="message.sent",
        data='{"brand": "acme", "recipient": "aino@example.fi"}',
        created_at=1_800_000_000.0,
    )


async def serve(
    server: Server, test: Callable[[int], Any], tls: ssl.SSLContext | None = None
) -> Any:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        return await test(server.port)
    finally:
        listening.close()
        if server.handlers:  # the client closed its connections: the handlers end
            await asyncio.wait(server.handlers, timeout=5)
        await listening.wait_closed()


def send_all(
    server: Server, count: int = 1, *, url: str = "http://127.0.0.1:{port}/hooks", **kw: Any
) -> list[WebhookResult]:
    secret = new_secret()

    async def test(port: int) -> list[WebhookResult]:
        sender = Sender(allow_private=True, timeout=kw.pop("timeout", 2.0), **kw)
        try:
            return [
                await sender.send(job(url.format(port=port), n), [secret]) for n in range(count)
            ]
        finally:
            await sender.close()

    return asyncio.run(serve(server, test))


def test_one_connection_carries_many_requests_each_signed() -> None:
    server = Server()
    secret = new_secret()

    async def test(port: int) -> list[WebhookResult]:
        sender = Sender(allow_private=True, timeout=2.0)
        try:
            return [
                await sender.send(job(f"http://127.0.0.1:{port}/hooks?x=1", n), [secret])
                for n in range(5)
            ]
        finally:
            await sender.close()

    results = asyncio.run(serve(server, test))
    assert [r.outcome for r in results] == ["delivered"] * 5
    assert server.connections == 1
    for i, seen in enumerate(server.seen):
        assert seen.head.startswith(b"POST /hooks?x=1 HTTP/1.1\r\n")
        headers = {
            k.lower(): v.strip()
            for k, _, v in (line.decode().partition(":") for line in seen.head.split(b"\r\n")[1:])
            if k
        }
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers["webhook-id"] == f"evt_{i}"
        Webhook(str(WebhookSecret(secret))).verify(seen.body, headers)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True, id="length"),
        pytest.param(CHUNKED, True, id="chunked"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (10 * MAX_BODY)
            + b"x" * (10 * MAX_BODY),
            False,
            id="longer-than-read",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (2 * MAX_BODY)
            + b"y" * (2 * MAX_BODY)
            + b"\r\n0\r\n\r\n",
            False,
            id="chunked-longer-than-read",
        ),
        pytest.param(
            b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            False,
            id="close",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False, id="http-1.0"),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            True,
            id="interim-answer",
        ),
    ],
)
def test_every_answer_framing_is_read_and_reuse_only_when_safe(answer: bytes, reused: bool) -> None:
    server = Server(default=answer)
    results = send_all(server, 3)
    assert [r.outcome for r in results] == ["delivered"] * 3
    assert server.connections == (1 if reused else 3)


def test_a_body_delimited_by_the_close_is_read() -> None:
    server = Server(default=b"HTTP/1.1 200 OK\r\n\r\nthanks", close_after=True)
    results = send_all(server, 2)
    assert [(r.outcome, r.code) for r in results] == [("delivered", 200)] * 2
    assert server.connections == 2


def test_a_connection_closed_while_idle_is_retried_once_on_a_new_one() -> None:
    server = Server(script=[NO_CONTENT, "hang-up"])
    results = send_all(server, 2)
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert server.connections == 2
    # the second webhook reached the receiver twice, with the same id both times
    assert [s.connection for s in server.seen] == [1, 1, 2]
    assert server.header(1, "webhook-id") == server.header(2, "webhook-id") == "evt_1"


def test_a_new_connection_closed_unanswered_is_a_failed_attempt() -> None:
    server = Server(script=["hang-up"])
    [result] = send_all(server)
    assert result.outcome == "retry" and "closed before an answer" in str(result.error)
    assert server.connections == 1  # not retried at once: the dispatcher's schedule decides


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SMTP/1.0 220 hello\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "in the middle of the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_a_malformed_answer_is_a_failed_attempt(answer: bytes, error: str) -> None:
    server = Server(script=[answer], close_after=True)
    [result] = send_all(server)
    assert result.outcome == "retry" and error in str(result.error)


def test_a_redirect_is_not_followed() -> None:
    server = Server(default=b"HTTP/1.1 307 Temporary\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n")
    [result] = send_all(server)
    assert result.code == 307 and "redirect to '/x' not followed" in str(result.error)
    assert len(server.seen) == 1


def _resolver(
    monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]
) -> list[tuple[Any, ...]]:
    """Fault injection: ``name`` resolves to ``answers`` in turn (a rebinding DNS)."""
    calls: list[tuple[Any, ...]] = []
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: asyncio.BaseEventLoop, host: Any, port: Any, **kw: Any) -> Any:
        if host != name:
            return await real(self, host, port, **kw)
        calls.append((host, port))
        address = answers[min(len(calls), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return calls


def test_the_connection_goes_to_the_checked_address_whatever_dns_says_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _resolver(monkeypatch, "hooks.rebind.test", ["127.0.0.1", "10.255.255.1"])
    server = Server(default=b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    results = send_all(server, 2, url="http://hooks.rebind.test:{port}/hooks")
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert len(calls) == 1  # resolved (and checked) once; both connections to that address
    assert server.header(0, "host") == f"hooks.rebind.test:{server.port}"


def test_a_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolver(monkeypatch, "hooks.rebind.test", ["127.0.0.1"])
    server = Server()

    async def test(port: int) -> WebhookResult:
        sender = Sender(allow_private=False, timeout=2.0)
        try:
            return await sender.send(job(f"http://hooks.rebind.test:{port}/"), [new_secret()])
        finally:
            await sender.close()

    result = asyncio.run(serve(server, test))
    assert result.outcome == "retry"
    assert "resolves to 127.0.0.1 is a loopback address" in str(result.error)
    assert server.connections == 0


def _certificate(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for ``name``, and a client
    context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, client


@pytest.mark.parametrize("certified", ["hooks.tls.test", "someone-else.test"])
def test_https_verifies_the_name_and_sends_it_as_sni(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certified: str
) -> None:
    _resolver(monkeypatch, "hooks.tls.test", ["127.0.0.1"])
    server_tls, client_tls = _certificate(tmp_path, certified)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _tls, name, _ctx: names.append(name)
    server = Server()

    async def test(port: int) -> list[WebhookResult]:
        sender = Sender(allow_private=True, timeout=2.0, tls=client_tls)
        try:
            url = f"https://hooks.tls.test:{port}/hooks"
            return [await sender.send(job(url, n), [new_secret()]) for n in range(2)]
        finally:
            await sender.close()

    results = asyncio.run(serve(server, test, tls=server_tls))
    if certified == "hooks.tls.test":
        assert [r.outcome for r in results] == ["delivered", "delivered"]
        assert server.connections == 1 and names == ["hooks.tls.test"]
    else:
        assert [r.outcome for r in results] == ["retry", "retry"]
        assert all(str(r.error).startswith("TLS:") for r in results)
        assert server.seen == []
