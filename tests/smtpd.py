"""A real aiosmtpd server on loopback that records what it receives and misbehaves on request.

Faults are described by :class:`Fault` (usually through ``@pytest.mark.smtp_fault``):

=========  ==================================================================
``at``     where: CONNECT (the greeting), EHLO, MAIL, RCPT, DATA (the reply
           to the DATA command), BODY (while the message body is being read),
           DOT (the reply after the final dot), RSET
``action`` reply (send ``reply`` instead of the normal answer; a 421 also hangs
           up), raw (write ``reply`` bytes as they are: garbage), disconnect
           (hang up without a word), hang (stop answering), delay (answer
           normally after ``delay`` seconds)
``times``  fire at most this many times (default: every time)
``skip``   let the first ``skip`` occurrences pass normally
=========  ==================================================================

After a DOT disconnect/hang/delay/raw the message counts as received (the server
stored it before the reply went wrong): exactly the possible-duplicate case.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

POINTS = ("CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "BODY", "DOT", "RSET")
ACTIONS = ("reply", "raw", "disconnect", "hang", "delay")
HANG = 3600.0  # "forever": cancelled when the client leaves or the server stops


@dataclass
class Fault:
    at: str
    reply: str | bytes | None = None
    action: str | None = None
    delay: float = 0.0
    times: int | None = None
    skip: int = 0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self.at = self.at.upper()
        if self.at not in POINTS:
            raise ValueError(f"fault point {self.at!r} not in {POINTS}")
        if self.action is None:
            self.action = "reply" if self.reply is not None else None
        if self.action not in ACTIONS:
            raise ValueError(f"fault action {self.action!r} not in {ACTIONS}")
        if self.action in ("reply", "raw") and self.reply is None:
            raise ValueError(f"fault action {self.action!r} needs a reply")

    def take(self) -> bool:
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int
    tls: bool
    user: str | None

    def message(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class RecordingHandler:
    faults: list[Fault] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    sessions: int = 0
    armed: bool = False
    live: set[FaultySMTP] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)
    #: advertise PIPELINING (RFC 2920) in the EHLO reply
    pipelining: bool = False
    #: MAIL commands that arrived with the next command already behind them
    pipelined: int = 0
    #: every connection's transports, held until the server stops and closes them all:
    #: a transport dropped unclosed (e.g. after a failed TLS handshake) would otherwise
    #: be garbage-collected at a random later moment, failing whichever test runs then
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    def fault(self, at: str) -> Fault | None:
        if not self.armed:
            return None
        for fault in self.faults:
            if fault.at == at and fault.take():
                return fault
        return None

    def record(self, server: SMTP, session: Session, envelope: Envelope) -> None:
        user = session.auth_data
        transport = server.transport
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("sslcontext") is not None
        )
        self.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                session=getattr(server, "session_no", 0),
                tls=tls,
                user=user.login.decode() if isinstance(user, LoginPassword) else None,
            )
        )

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.fault("DOT")
        if fault is None:
            self.record(server, session, envelope)
            return "250 2.0.0 OK queued"
        smtp = cast(FaultySMTP, server)
        if fault.action == "reply":
            reply = fault.reply.decode() if isinstance(fault.reply, bytes) else str(fault.reply)
            if reply.startswith("2"):
                self.record(server, session, envelope)
            if reply.startswith("421"):
                await smtp.reply_and_drop(reply)
            return reply
        self.record(server, session, envelope)  # stored; the reply is what goes wrong
        if fault.action == "delay":
            await asyncio.sleep(fault.delay)
            return "250 2.0.0 OK queued after a while"
        await smtp.misbehave(fault)
        return "250 2.0.0 never reached"


class FaultySMTP(SMTP):
    """aiosmtpd's SMTP with fault points; one instance per connection."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler
        self.greeted = False
        self.in_ehlo = False
        self.session_no = 0

    # -- fault actions --------------------------------------------------------

    async def hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await asyncio.sleep(HANG)  # connection_lost() cancels us

    async def reply_and_drop(self, reply: str) -> None:
        await SMTP.push(self, reply)
        await self.hang_up()

    async def misbehave(self, fault: Fault) -> None:
        if fault.action == "disconnect":
            await self.hang_up()
        elif fault.action == "hang":
            await asyncio.sleep(HANG)
        elif fault.action == "raw":
            raw = fault.reply if isinstance(fault.reply, bytes) else str(fault.reply).encode()
            self._writer.write(raw)
            await self._writer.drain()

    async def _faulted(self, at: str, normal: Callable[[], Awaitable[None]]) -> None:
        fault = self.recorder.fault(at)
        if fault is None:
            await normal()
        elif fault.action == "delay":
            await asyncio.sleep(fault.delay)
            await normal()
        elif fault.action == "reply":
            reply = fault.reply.decode() if isinstance(fault.reply, bytes) else str(fault.reply)
            if reply.startswith("421"):
                await self.reply_and_drop(reply)
            else:
                await SMTP.push(self, reply)
        else:
            await self.misbehave(fault)

    # -- hooks ----------------------------------------------------------------

    async def push(self, status: Any) -> None:
        if self.greeted:
            await super().push(status)
            if self.in_ehlo and self.recorder.pipelining and status == f"250-{self.hostname}":
                await super().push("250-PIPELINING")  # aiosmtpd pipelines, says nothing
            return
        self.greeted = True  # the first push of a connection is its greeting
        self.recorder.sessions += 1
        self.session_no = self.recorder.sessions
        self.recorder.live.add(self)
        await self._faulted("CONNECT", lambda: SMTP.push(self, status))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.recorder.transports.append(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.recorder.live.discard(self)
        super().connection_lost(error)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.in_ehlo = True
        try:
            await self._faulted("EHLO", lambda: super(FaultySMTP, self).smtp_EHLO(hostname))
        finally:
            self.in_ehlo = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._reader._buffer:  # type: ignore[attr-defined]  # RCPT already here
            self.recorder.pipelined += 1
        await self._faulted("MAIL", lambda: super(FaultySMTP, self).smtp_MAIL(arg))

    async def smtp_RCPT(self, arg: str | None) -> None:
        await self._faulted("RCPT", lambda: super(FaultySMTP, self).smtp_RCPT(arg))

    async def smtp_RSET(self, arg: str) -> None:
        await self._faulted("RSET", lambda: super(FaultySMTP, self).smtp_RSET(arg))

    async def smtp_DATA(self, arg: str) -> None:
        body = self.recorder.fault("BODY")
        if body is not None:
            await SMTP.push(self, "354 End data with <CR><LF>.<CR><LF>")
            await self._reader.read(4096)  # part of the body, then trouble
            await self.misbehave(body)
            return
        await self._faulted("DATA", lambda: super(FaultySMTP, self).smtp_DATA(arg))


class _Controller(Controller):
    def factory(self) -> FaultySMTP:
        return FaultySMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # bound to port 0: learn the real port before aiosmtpd's self-test connects
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if users.get(login) == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    return check


class SMTPTestServer:
    """aiosmtpd in a thread on ``host``:free port; ``messages`` and ``sessions`` as seen."""

    def __init__(
        self,
        faults: Iterable[Fault] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,
        tls_context: Any = None,
        require_starttls: bool = False,
        users: dict[str, str] | None = None,
        data_size_limit: int | None = None,
        pipelining: bool = False,
    ) -> None:
        self.host = host
        self.handler = RecordingHandler(list(faults), pipelining=pipelining)
        kwargs: dict[str, Any] = {
            "server_hostname": "smtpd.test",
            "ready_timeout": 10.0,
            "data_size_limit": data_size_limit,
        }
        if ssl_context is not None:
            kwargs["ssl_context"] = ssl_context
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        if users is not None:
            kwargs["authenticator"] = _authenticator(users)
            kwargs["auth_require_tls"] = False
        self.controller = _Controller(self.handler, hostname=host, port=port, **kwargs)
        self.port = 0

    def start(self) -> SMTPTestServer:
        self.controller.start()
        self.port = self.controller.port
        self.handler.sessions = 0  # forget aiosmtpd's own start-up probe
        self.handler.armed = True
        return self

    def stop(self) -> None:
        self.handler.armed = False
        self._close_transports()
        self.controller.stop()

    def _close_transports(self) -> None:
        """Abort every connection's socket and let the loop finish closing them before it
        stops: a socket whose close was still pending (e.g. after a failed TLS handshake)
        would otherwise be garbage-collected later as an unclosed transport, and that
        warning would fail whichever test happened to be running."""
        loop = self.controller.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        done = threading.Event()

        def close() -> None:
            transports, self.handler.transports = self.handler.transports, []
            for transport in transports:
                if isinstance(transport, asyncio.WriteTransport):
                    transport.abort()
            loop.call_soon(done.set)  # after the callbacks the aborts scheduled

        loop.call_soon_threadsafe(close)
        done.wait(5)

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def sessions(self) -> int:
        return self.handler.sessions

    def drop_connections(self) -> None:
        """Hang up every open session now (as an idle timeout would); blocks until done.

        Blocking the caller's thread matters: a client event loop calling this cannot
        notice the hang-up before its next command, which is the case to test.
        """
        done = threading.Event()

        def drop() -> None:
            for smtpd in list(self.handler.live):
                if smtpd.transport is not None:
                    smtpd.transport.close()
            done.set()

        self.controller.loop.call_soon_threadsafe(drop)
        if not done.wait(5):
            raise TimeoutError("server did not drop its connections")
