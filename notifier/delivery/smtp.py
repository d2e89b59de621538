"""The shared SMTP engine under the relay and direct transports.

:class:`SMTPEngine` opens sessions (EHLO, STARTTLS, AUTH), keeps them in per-endpoint
pools (:mod:`notifier.delivery.pool`) and runs the one-recipient transaction on them.
The transports over it: :mod:`~notifier.delivery.relay` (one smarthost) and
:mod:`~notifier.delivery.direct` (MX lookup); :mod:`~notifier.delivery.capture` needs
no SMTP at all. Library errors become DeliveryErrors in :mod:`notifier.delivery.failures`.

When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write and
their replies are read in order: two round trips a message instead of four, which
over a network is most of the time to inbox.

SMTP delivery is at-least-once: when the connection dies, times out or answers garbage
*after the final dot* the server may have stored the message, so the result carries
``possible_duplicate=True`` (logged as "possible duplicate"); the retry must reuse the
same Message-ID. The body and the final dot are written separately, so a connection
that dies while the body is still being sent is known not to have delivered it.

Timeouts (RFC 5321 §4.5.3.2, see :class:`Timeouts`) are set per command: aiosmtplib
has one timeout per call, so the wait after the final dot (600 s) is separate from the
shorter command timeouts. A transport belongs to the event loop it is first used in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass, replace
from typing import cast

import aiosmtplib
from aiosmtplib import SMTPResponse

from ..errors import ConfigError, DeliveryError, TransientDeliveryError
from .envelope import Prepared
from .failures import LIBRARY_ERRORS, ConnectionLost, SessionError, translate, translated
from .pool import Conn, Endpoint, Limits, Pool, hang_up
from .replies import classify_reply, clean_text
from .transport import AttemptResult

__all__ = ["SETTING", "SMTPEngine", "Timeouts"]

log = logging.getLogger(__name__)

SETTING = "NOTIFIER_SMTP_URL"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for each step (RFC 5321 §4.5.3.2 in brackets).

    ``connect`` covers the TCP connect, an implicit TLS handshake and the greeting
    (5 min); ``command`` covers EHLO, STARTTLS, AUTH, MAIL, RCPT and RSET (5 min; less
    for our own relay); ``data`` the reply to DATA (2 min); ``data_block`` is how long
    sending the body may make no progress (3 min); ``final`` the reply after the final
    dot (10 min: a short wait there is what causes duplicate deliveries).
    """

    connect: float = 30.0
    command: float = 60.0
    data: float = 120.0
    data_block: float = 180.0
    final: float = 600.0
    quit: float = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "command", "data", "data_block", "final", "quit"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{SETTING}: {name} timeout must be positive")


class _Stale(Exception):
    """A reused idle connection turned out to be closed before anything was acknowledged."""


def _is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SMTPEngine:
    """Sessions, pooled connections and the one-recipient transaction, for relay and direct."""

    _sweep_every = 5.0

    def __init__(
        self,
        *,
        limits: Limits,
        timeouts: Timeouts,
        helo: str | None,
        tls_context: ssl.SSLContext,
    ) -> None:
        if limits.size < 1 or limits.max_per_connection < 1:
            raise ConfigError(f"{SETTING}: pool_size and max_per_connection must be >= 1")
        if limits.max_age <= 0 or limits.max_idle <= 0:
            raise ConfigError(f"{SETTING}: max_age and max_idle must be positive")
        self.limits = limits
        self.timeouts = timeouts
        self._helo = helo
        self._tls = tls_context
        self._pools: dict[tuple[str, int], Pool] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._last_sweep = time.monotonic()
        self._closed = False
        #: sessions opened so far (for tests and stats)
        self.connections_opened = 0

    # -- sessions ---------------------------------------------------------------

    async def _helo_name(self) -> str:
        if self._helo is None:
            self._helo = await asyncio.to_thread(socket.getfqdn)
        return self._helo

    async def _ehlo(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo(timeout=self.timeouts.command)
        except aiosmtplib.SMTPHeloError as exc:
            if exc.code < 500 or not smtp.is_connected:  # 5xx: no ESMTP, try HELO
                raise
            await smtp.helo(timeout=self.timeouts.command)

    async def _open(self, ep: Endpoint) -> Conn:
        t = self.timeouts
        smtp = aiosmtplib.SMTP(
            hostname=ep.host,
            port=ep.port,
            local_hostname=await self._helo_name(),
            use_tls=ep.implicit_tls,
            start_tls=False,
            tls_context=self._tls,
            timeout=t.command,
        )
        try:
            with translated("connect", ep.label):
                await smtp.connect(timeout=t.connect)
            self.connections_opened += 1
            with translated("ehlo", ep.label):
                await self._ehlo(smtp)
            encrypted = ep.implicit_tls
            if not encrypted and ep.starttls != "never":
                if smtp.supports_extension("starttls"):
                    try:
                        with translated("starttls", ep.label):
                            await smtp.starttls(
                                server_hostname=ep.tls_name,
                                tls_context=self._tls,
                                timeout=t.command,
                            )
                            await self._ehlo(smtp)
                    except SessionError:
                        if ep.starttls == "opportunistic" and ep.plaintext_fallback:
                            hang_up(smtp)
                            log.info("%s: STARTTLS failed, retrying without TLS", ep.label)
                            return await self._open(replace(ep, starttls="never"))
                        raise
                    encrypted = True
                elif ep.starttls == "required":
                    raise SessionError(
                        "STARTTLS required but not offered; not falling back to plaintext",
                        host=ep.label,
                    )
            if ep.username is not None:
                if not encrypted and not _is_loopback(ep.host):
                    raise SessionError(
                        "refusing to send credentials over an unencrypted connection",
                        host=ep.label,
                    )
                with translated("auth", ep.label):
                    await smtp.login(ep.username, str(ep.password or ""), timeout=t.command)
        except BaseException:
            hang_up(smtp)
            raise
        now = time.monotonic()
        log.debug("%s: connection opened", ep.label)
        return Conn(smtp, ep.label, opened=now, last_used=now)

    def _pool(self, ep: Endpoint) -> Pool:
        key = (ep.host, ep.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(ep, self.limits)
        return pool

    def _retire(self, conns: list[Conn], *, polite: bool = True) -> None:
        """QUIT politely in the background (bounded by the quit timeout), or just close."""
        for conn in conns:
            if polite and conn.smtp.is_connected and not conn.broken and not conn.busy:
                task = asyncio.get_running_loop().create_task(self._quit(conn))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            else:
                hang_up(conn.smtp)

    async def _quit(self, conn: Conn) -> None:
        try:
            with contextlib.suppress(*LIBRARY_ERRORS):
                await conn.smtp.quit(timeout=self.timeouts.quit)
        finally:
            hang_up(conn.smtp)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self._sweep_every:
            return
        self._last_sweep = now
        for key, pool in list(self._pools.items()):
            self._retire(pool.expire_idle(now))
            if not pool.idle and not pool.users:
                del self._pools[key]

    # -- one message ------------------------------------------------------------

    async def _deliver(self, ep: Endpoint, msg: Prepared) -> AttemptResult:
        """Send on a pooled connection; SessionError when no session could be had."""
        pool = self._pool(ep)
        pool.users += 1  # counted while waiting too, so the sweep never drops a busy pool
        try:
            async with pool.slots:
                if msg.envelope.ready is not None:
                    await msg.envelope.ready()
                return await self._deliver_on(pool, ep, msg)
        finally:
            pool.users -= 1

    async def _deliver_on(self, pool: Pool, ep: Endpoint, msg: Prepared) -> AttemptResult:
        conn: Conn | None = None
        try:
            conn, unfit = pool.take_idle(time.monotonic())
            self._retire(unfit)
            if conn is None:
                conn = await self._open(ep)
            try:
                return await self._transaction(conn, msg)
            except _Stale as stale:
                log.info("%s: idle connection was closed (%s); reopening once", ep.label, stale)
                hang_up(conn.smtp)
                conn = await self._open(ep)
                return await self._transaction(conn, msg)
        finally:
            if conn is not None:
                conn.last_used = time.monotonic()
                if not self._closed and pool.reusable(conn, conn.last_used):
                    pool.idle.append(conn)
                else:
                    # after close() nobody would wait for a QUIT: just hang up
                    self._retire([conn], polite=not self._closed)

    async def _command(self, conn: Conn, stage: str, *args: bytes, timeout: float) -> SMTPResponse:
        try:
            with translated(stage, conn.label):
                return await conn.smtp.execute_command(*args, timeout=timeout)
        except DeliveryError:
            conn.drop()
            raise

    async def _refused(self, conn: Conn, reply: SMTPResponse, stage: str) -> AttemptResult:
        """A non-success reply to MAIL, RCPT or DATA: classify it, then RSET for reuse."""
        result = classify_reply(reply.code, reply.message, stage=stage, host=conn.label)
        if reply.code == 421 or not 200 <= reply.code <= 599 or not conn.smtp.is_connected:
            conn.drop()
            return result
        try:
            rset = await self._command(conn, "rset", b"RSET", timeout=self.timeouts.command)
        except DeliveryError:
            return result
        if rset.code != 250:
            conn.drop()
        return result

    async def _transaction(self, conn: Conn, msg: Prepared) -> AttemptResult:
        """MAIL, RCPT, DATA, body: one recipient. Raises _Stale, ConnectionLost."""
        smtp = conn.smtp
        if (msg.sender.utf8 or msg.rcpt.utf8) and not smtp.supports_extension("smtputf8"):
            return AttemptResult(
                "permanent",
                host=conn.label,
                enhanced="5.6.7",
                text="address needs SMTPUTF8, which the server does not offer",
            )
        conn.busy = True  # cleared only when the transaction ends cleanly
        result = await self._steps(conn, msg)
        conn.busy = False
        conn.used += 1
        return result

    async def _steps(self, conn: Conn, msg: Prepared) -> AttemptResult:
        smtp = conn.smtp
        options: list[bytes] = []
        if smtp.supports_extension("size"):
            options.append(b"SIZE=%d" % len(msg.wire))
        if msg.eightbit and smtp.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if msg.sender.utf8 or msg.rcpt.utf8:
            options.append(b"SMTPUTF8")
        mail = b" ".join((b"MAIL", b"FROM:<" + msg.sender.wire + b">", *options))
        rcpt = b"RCPT TO:<" + msg.rcpt.wire + b">"
        if smtp.supports_extension("pipelining"):
            refused = await self._pipelined(conn, mail, rcpt)
        else:
            refused = await self._lockstep(conn, mail, rcpt)
        if refused is not None:
            return refused
        reply = await self._send_body(conn, msg.wire)
        if not 200 <= reply.code <= 599:  # an answer, but no verdict: it may be stored
            conn.drop()
            raise ConnectionLost(
                f"dot: malformed reply: {reply.code} {clean_text(reply.message)}",
                stage="dot",
                host=conn.label,
                after_dot=True,
            )
        if reply.code == 421:
            conn.drop()
        return classify_reply(reply.code, reply.message, stage="dot", host=conn.label)

    async def _lockstep(self, conn: Conn, mail: bytes, rcpt: bytes) -> AttemptResult | None:
        """MAIL, RCPT, DATA one reply at a time; ``None`` once DATA got its 354."""
        t = self.timeouts
        try:
            reply = await self._command(conn, "mail", mail, timeout=t.command)
        except ConnectionLost as exc:
            if conn.reused:  # nothing of this message was acknowledged yet
                raise _Stale(str(exc)) from exc
            raise
        if reply.code == 421 and conn.reused:
            conn.broken = True
            raise _Stale(f"{reply.code} {clean_text(reply.message)}")
        if reply.code != 250:
            return await self._refused(conn, reply, "mail")
        reply = await self._command(conn, "rcpt", rcpt, timeout=t.command)
        if reply.code not in (250, 251):
            return await self._refused(conn, reply, "rcpt")
        reply = await self._command(conn, "data", b"DATA", timeout=t.data)
        if reply.code != 354:
            return await self._refused(conn, reply, "data")
        return None

    async def _pipelined(self, conn: Conn, mail: bytes, rcpt: bytes) -> AttemptResult | None:
        """MAIL, RCPT and DATA in one write (RFC 2920), their replies read in order: one
        round trip instead of three. ``None`` once DATA got its 354; the body is still
        sent and drained before the final dot, as in lockstep."""
        t = self.timeouts
        steps = (
            ("mail", t.command, (250,)),
            ("rcpt", t.command, (250, 251)),
            ("data", t.data, (354,)),
        )
        replies: list[SMTPResponse] = []
        try:
            await _exchange(conn, b"\r\n".join((mail, rcpt, b"DATA\r\n")), steps, replies)
        except DeliveryError as exc:
            conn.drop()
            if not replies and conn.reused and isinstance(exc, ConnectionLost):
                raise _Stale(str(exc)) from exc  # nothing of this message was acknowledged
            raise
        for (stage, _, wanted), reply in zip(steps, replies, strict=False):
            if reply.code in wanted:
                continue
            if stage == "mail" and reply.code == 421 and conn.reused:
                conn.drop()
                raise _Stale(f"{reply.code} {clean_text(reply.message)}")
            if replies[-1].code == 354:  # DATA accepted after MAIL or RCPT failed: a
                conn.drop()  # broken server; hang up rather than end an empty message
            return await self._refused(conn, reply, stage)
        return None

    async def _send_body(self, conn: Conn, wire: bytes) -> SMTPResponse:
        protocol = conn.smtp.protocol
        try:
            if protocol is None or protocol.transport is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before the body")
            with translated("body", conn.label):
                protocol.write(wire)
                await _drain(cast(asyncio.WriteTransport, protocol.transport), self.timeouts)
                protocol.write(b".\r\n")
            # from here on the server may have the whole message
            with translated("dot", conn.label):
                return await protocol.read_response(timeout=self.timeouts.final)
        except aiosmtplib.SMTPServerDisconnected as exc:
            conn.drop()
            raise translate(exc, stage="body", host=conn.label) from exc
        except DeliveryError:
            conn.drop()
            raise

    # -- lifecycle --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransientDeliveryError("transport is closed")

    async def close(self) -> None:
        """QUIT idle connections; connections in use are closed when their send ends."""
        self._closed = True
        for pool in self._pools.values():
            conns, pool.idle = pool.idle, []
            self._retire(conns)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        # a socket closes in a callback the loop runs next; give it that turn, so that
        # a caller who ends the loop right after close() leaves no socket open
        await asyncio.sleep(0)


#: aiosmtplib's bounds on a reply: a line, and a whole (multi-line) reply
_MAX_LINE = 8192
_MAX_REPLY = 4 * _MAX_LINE


def _parse_reply(buffer: bytearray) -> SMTPResponse | None:
    """Take one complete (possibly multi-line) reply off the front of ``buffer``, as
    aiosmtplib reads it; ``None`` until the reply's last line has arrived."""
    offset, lines = 0, []
    while True:
        end = buffer.find(b"\n", offset)
        if end == -1:
            if len(buffer) - offset > _MAX_LINE or len(buffer) > _MAX_REPLY:
                raise aiosmtplib.SMTPResponseException(-1, "Response too long")
            return None
        line = bytes(buffer[offset : end + 1])
        if len(line) > _MAX_LINE:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        try:
            code = int(line[:3])
        except ValueError:
            text = line.decode("utf-8", errors="ignore")
            raise aiosmtplib.SMTPResponseException(
                -1, f"Malformed SMTP response line: {text}"
            ) from None
        offset = end + 1
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            del buffer[:offset]
            return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))


class _Replies(asyncio.Protocol):
    """Stands in for aiosmtplib's protocol while the replies to pipelined commands
    arrive. aiosmtplib's keeps one reply at a time and drops bytes that arrive while a
    parsed reply waits to be picked up, which is what pipelined replies do. Loss of the
    connection is passed on, so the session's state stays right."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self.inner = inner
        self.buffer = bytearray()
        self.ready: list[SMTPResponse] = []
        self.error: Exception | None = None
        self.lost = False
        self._wakeup: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        try:
            while self.error is None and (reply := _parse_reply(self.buffer)) is not None:
                self.ready.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self.error = exc
        self._wake()

    def eof_received(self) -> bool:
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._wake()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def next(self, timeout: float) -> SMTPResponse:
        """The next reply, in order; replies that arrived before a loss come first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready:
            if self.error is not None:
                raise self.error
            self._wakeup = loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wakeup
            except TimeoutError as exc:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response"
                ) from exc
        return self.ready.pop(0)


async def _exchange(
    conn: Conn,
    commands: bytes,
    steps: tuple[tuple[str, float, tuple[int, ...]], ...],
    replies: list[SMTPResponse],
) -> None:
    """Write pipelined ``commands`` at once, then append each step's reply to
    ``replies`` in order (each within its step's timeout); stops after a 421, which
    closes the session. Library errors leave as DeliveryErrors of the step waited for."""
    if commands.count(b"\n") != len(steps) or commands.count(b"\r") != len(steps):
        raise ValueError("Command arg contains a prohibited control character")
    protocol = conn.smtp.protocol
    transport = protocol.transport if protocol is not None else None
    if protocol is None or transport is None or transport.is_closing():
        with translated(steps[0][0], conn.label):
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    collector = _Replies(protocol)
    transport.set_protocol(collector)
    try:
        with translated(steps[0][0], conn.label):
            protocol.write(commands)
        for stage, timeout, _ in steps:
            with translated(stage, conn.label):
                reply = await collector.next(timeout)
            replies.append(reply)
            if reply.code == 421:
                return
    finally:
        if not collector.lost:
            transport.set_protocol(protocol)  # unsolicited bytes are dropped, as aiosmtplib does


async def _drain(transport: asyncio.WriteTransport, timeouts: Timeouts) -> None:
    """Wait until the kernel took every byte written so far (or the connection died).

    Only then is the final dot written, so a connection lost before that point is known
    not to have delivered the message. Fails if no progress for ``data_block`` seconds.
    """
    loop = asyncio.get_running_loop()
    last = -1
    since = loop.time()
    delay = 0.0005
    while True:
        if transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost while sending the body")
        size = transport.get_write_buffer_size()
        if size == 0:
            return
        now = loop.time()
        if last < 0 or size < last:
            last, since = size, now
        elif now - since > timeouts.data_block:
            raise aiosmtplib.SMTPTimeoutError("no progress sending the body")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
