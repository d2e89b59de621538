"""A lean HTTP/1.1 client for webhook POSTs: keep-alive connections to checked addresses.

It does only what a webhook attempt needs, which is why it is cheap (httpx's pool cost
1–2 ms of CPU per request): the request goes out in one write; the answer's status line
and headers are read, then its body — ``Content-Length``, chunked, or up to the close —
is drained up to :data:`MAX_BODY` bytes (a longer one closes the connection instead of
being read). A connection is reused only when its answer was read completely and
neither side asked to close it; one that went stale while idle (the receiver closed it
as we wrote) is retried once on a new connection, the request being safe to repeat
(receivers dedupe on ``webhook-id``). Redirects are not followed: a 3xx is an answer
like any other. The caller bounds the whole exchange in time and chooses the address
(connected to as given; TLS verifies and sends SNI for ``server_name``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass

#: bytes of an answer's body read at most (it is never used, only drained)
MAX_BODY = 4096
#: bytes of an answer's status line and headers read at most
MAX_HEAD = 65536
#: an idle connection is not reused after this many seconds (receivers close theirs)
IDLE = 4.0
#: idle connections kept per destination
KEEP = 64


class ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.1 we can read, or it ended early."""


class ConnectFailed(OSError):
    """No connection (refused, unreachable, timed out); TLS failures stay ``SSLError``."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the checked ``address`` plus the names it is sent for."""

    scheme: str
    address: str
    port: int
    #: the Host header (with a port when not the default one)
    host_header: str
    #: the name TLS verifies and sends as SNI
    server_name: str


@dataclass(frozen=True, slots=True)
class Answer:
    code: int
    location: str


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < IDLE
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    def close(self) -> None:
        self.writer.close()


class Client:
    """Keep-alive connections by destination; one per dispatcher."""

    def __init__(
        self, connect_timeout: float = 5.0, tls: ssl.SSLContext | None = None, keep: int = KEEP
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keep = keep
        self._tls = tls
        self._idle: dict[Target, list[_Conn]] = defaultdict(list)

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)
            except (OSError, TimeoutError):  # ssl.SSLError is an OSError
                pass

    def _reuse(self, target: Target) -> _Conn | None:
        idle = self._idle.get(target)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _connect(self, target: Target) -> _Conn:
        tls = self.tls() if target.scheme == "https" else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    target.address,
                    target.port,
                    ssl=tls,
                    server_hostname=target.server_name if tls else None,
                    limit=MAX_HEAD,
                )
        except TimeoutError as exc:
            raise ConnectFailed(f"timed out after {self.connect_timeout:g} s") from exc
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc) or "connection refused") from exc
        return _Conn(reader, writer)

    async def post(self, target: Target, path: bytes, headers: bytes, body: bytes) -> Answer:
        """POST ``body``; ``headers`` are complete ``name: value\\r\\n`` lines (Host and
        Content-Length are added here). Raises OSError, TimeoutError (connect) or
        :class:`ProtocolError`; the caller's timeout may cancel it at any point."""
        request = b"".join(
            (
                b"POST ",
                path,
                b" HTTP/1.1\r\nhost: ",
                target.host_header.encode("ascii"),
                b"\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\n",
                headers,
                b"\r\n",
                body,
            )
        )
        conn = self._reuse(target)
        if conn is not None:
            try:
                return await self._exchange(target, conn, request)
            except _Stale:
                pass  # closed by the receiver while idle: once more on a new connection
        return await self._exchange(target, await self._connect(target), request)

    async def _exchange(self, target: Target, conn: _Conn, request: bytes) -> Answer:
        reused = conn.idle_since > 0
        keep = False
        try:
            conn.writer.write(request)
            if conn.writer.transport.get_write_buffer_size() > 65536:
                await conn.writer.drain()
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _Stale from exc
                raise ProtocolError("the connection closed before an answer") from exc
            except ConnectionResetError as exc:
                if reused:
                    raise _Stale from exc
                raise
            except asyncio.LimitOverrunError as exc:
                raise ProtocolError("the answer's headers are too long") from exc
            version, code, fields = _head(head)
            while 100 <= code < 200:  # interim answers (100 Continue, 103 …) precede the real one
                if code == 101:
                    raise ProtocolError("the receiver switched protocols")
                version, code, fields = _head(await conn.reader.readuntil(b"\r\n\r\n"))
            keep = await _drain(conn.reader, version, code, fields)
            return Answer(code, fields.get("location", ""))
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("the connection closed in the middle of the answer") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("the answer's headers are too long") from exc
        finally:
            if keep:
                conn.idle_since = time.monotonic()
                idle = self._idle[target]
                if len(idle) < self.keep:
                    idle.append(conn)
                else:
                    conn.close()
            else:
                conn.close()


class _Stale(Exception):
    """A reused connection had been closed by the receiver: nothing was answered."""


def _head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    """The version, status code and (lower-cased) header fields of one answer."""
    lines = raw.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"a malformed header line: {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        if key in fields and key in ("content-length", "transfer-encoding"):
            if key == "content-length" and fields[key] != value:
                raise ProtocolError("conflicting Content-Length headers")
            if key == "transfer-encoding":
                value = f"{fields[key]}, {value}"
        fields[key] = value
    return status[0], int(status[1]), fields


async def _drain(
    reader: asyncio.StreamReader, version: str, code: int, fields: dict[str, str]
) -> bool:
    """Read the answer's body (RFC 9112 §6.3) up to :data:`MAX_BODY`; whether the
    connection may be reused."""
    connection = {t.strip() for t in fields.get("connection", "").lower().split(",")}
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if code in (204, 304):
        return keep
    coding = fields.get("transfer-encoding")
    if coding is not None:
        if coding.lower().rsplit(",", 1)[-1].strip() != "chunked":
            await reader.read(MAX_BODY)  # delimited by the close
            return False
        return await _chunked(reader) and keep
    length = fields.get("content-length")
    if length is None:
        await reader.read(MAX_BODY)  # delimited by the close
        return False
    if not length.isdigit():
        raise ProtocolError(f"a bad Content-Length: {length[:40]!r}")
    size = int(length)
    if size > MAX_BODY:
        return False  # not read: the connection is closed instead
    await reader.readexactly(size)
    return keep


async def _chunked(reader: asyncio.StreamReader) -> bool:
    """Read a chunked body; False when it is longer than :data:`MAX_BODY` (not read)."""
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"a bad chunk size: {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
                pass
            return True
        total += size
        if total > MAX_BODY:
            return False
        await reader.readexactly(size + 2)
