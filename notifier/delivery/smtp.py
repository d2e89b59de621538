"""Delivery transports: relay (pooled SMTP), direct (MX lookup) and capture (.eml files).

Each class implements :class:`notifier.delivery.transport.Transport`: ``send(envelope)`` returns
one :class:`AttemptResult` and never raises for an SMTP-level outcome (reply, timeout,
refused or dropped connection, DNS failure, invalid envelope address).

Third-party exceptions (aiosmtplib, dnspython, ``OSError``) are translated into the
:class:`~notifier.errors.DeliveryError` tree in one place, :func:`_translate`, always
with ``raise ... from exc``; ``send`` turns a ``DeliveryError`` into a result.

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
import os
import random
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NoReturn, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
from aiosmtplib import SMTPResponse

from ..config import Secret
from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from .transport import AttemptResult, Envelope, Transport

__all__ = [
    "CaptureTransport",
    "ConnectionLost",
    "DirectTransport",
    "RelayTransport",
    "SessionError",
    "Timeouts",
    "classify_reply",
    "parse_enhanced",
    "parse_retry_after",
    "transport_from_url",
]

log = logging.getLogger(__name__)

SETTING = "NOTIFIER_SMTP_URL"
StartTLS = Literal["required", "opportunistic", "never"]
_STARTTLS_MODES: tuple[StartTLS, ...] = ("required", "opportunistic", "never")

#: stages whose failure means "no session": try the next host (direct) or later
_SETUP_STAGES = frozenset({"connect", "ehlo", "starttls", "auth"})
_MAX_TEXT = 1000  # characters of a server reply kept in a result
_MAX_RETRY_AFTER = 24 * 3600.0


# --------------------------------------------------------------------------- timeouts


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


RELAY_TIMEOUTS = Timeouts()
DIRECT_TIMEOUTS = Timeouts(command=300.0)


# --------------------------------------------------------------------------- errors


class SessionError(TransientDeliveryError):
    """No usable SMTP session: connect, greeting, EHLO, STARTTLS or AUTH failed.

    Nothing of the message was sent; direct delivery tries the next MX host.
    """


class ConnectionLost(TransientDeliveryError):
    """The connection died, timed out or answered garbage during a transaction.

    ``after_dot`` is true when the final dot had been written: the server may have
    stored the message (a possible duplicate on retry).
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        host: str | None = None,
        after_dot: bool = False,
    ) -> None:
        self.stage = stage
        self.after_dot = after_dot
        super().__init__(message, host=host)


class _Stale(Exception):
    """A reused idle connection turned out to be closed before anything was acknowledged."""


def _translate(exc: BaseException, *, stage: str, host: str | None) -> DeliveryError:
    """The one place where aiosmtplib, dnspython and OS errors become DeliveryErrors."""
    if isinstance(exc, DeliveryError):
        return exc
    where = f"{host}: " if host else ""
    if stage == "capture":
        return TransientDeliveryError(f"cannot write the capture file: {exc}", host=host)
    if isinstance(exc, dns.exception.DNSException):
        if isinstance(exc, dns.resolver.NXDOMAIN):
            return PermanentDeliveryError(
                f"{where}domain does not exist (NXDOMAIN)", enhanced="5.4.4", host=host
            )
        if isinstance(exc, dns.exception.Timeout):
            return TransientDeliveryError(f"{where}DNS timeout", enhanced="4.4.3", host=host)
        if isinstance(exc, dns.resolver.NoNameservers):
            return TransientDeliveryError(
                f"{where}DNS failure (SERVFAIL or refused)", enhanced="4.4.3", host=host
            )
        return TransientDeliveryError(f"{where}DNS error: {exc}", enhanced="4.4.3", host=host)
    after_dot = stage == "dot"
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 200 <= exc.code <= 599:
        text = _clean(exc.message)
        message = f"{stage}: {exc.code} {text}"
        enhanced = parse_enhanced(exc.code, text)
        if stage in _SETUP_STAGES:
            return SessionError(message, code=exc.code, enhanced=enhanced, host=host)
        return TransientDeliveryError(message, code=exc.code, enhanced=enhanced, host=host)
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # code -1: unparseable reply
        message = f"{stage}: malformed or over-long reply: {_clean(exc.message)}"
    elif isinstance(exc, TimeoutError):  # includes aiosmtplib.SMTPTimeoutError
        message = f"{stage}: timed out"
    elif isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionRefusedError):
        message = f"{stage}: cannot connect: {exc}"
    elif isinstance(exc, aiosmtplib.SMTPException | OSError):
        message = f"{stage}: connection lost: {exc}"
    else:
        message = f"{stage}: {exc!r}"
    if stage in _SETUP_STAGES:
        return SessionError(message, host=host)
    return ConnectionLost(message, stage=stage, host=host, after_dot=after_dot)


_LIBRARY_ERRORS = (aiosmtplib.SMTPException, OSError, dns.exception.DNSException)


@contextlib.contextmanager
def _translated(stage: str, host: str | None) -> Iterator[None]:
    try:
        yield
    except _LIBRARY_ERRORS as exc:
        raise _translate(exc, stage=stage, host=host) from exc


# --------------------------------------------------------------------------- replies

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_RETRY = re.compile(
    r"\b(?:try|retry|come\s+back)\b[^.\d]{0,30}?\b(?:in|after)\s+(\d{1,6}(?:\.\d+)?)\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b",
    re.IGNORECASE,
)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(text: str) -> str:
    """A server's reply text made safe to store and log: no controls, bounded length."""
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = _CONTROL.sub("?", text.replace("\r", "")).strip()
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def parse_enhanced(code: int, text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of a reply text, e.g. ``"5.1.1"``.

    Its class must agree with the basic code's first digit, as RFC 3463 requires.
    """
    match = _ENHANCED.match(text.lstrip())
    if match is None or match.group(1) != str(code)[:1]:
        return None
    return ".".join(match.groups())


def parse_retry_after(text: str) -> float | None:
    """Seconds from "try again in N minutes" (and similar) in a reply, capped at a day."""
    match = _RETRY.search(text)
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNIT[match.group(2)[0].lower()]
    return min(seconds, _MAX_RETRY_AFTER)


def _too_many_recipients(code: int, enhanced: str | None, text: str, stage: str) -> bool:
    # RFC 5321 §4.5.3.1.10: a 552 to RCPT means "too many recipients" and is to be
    # treated as 452; 552 5.3.4 (message too big) stays permanent.
    if code != 552 or enhanced == "5.3.4":
        return False
    return stage == "rcpt" or enhanced == "5.5.3" or "too many recipients" in text.lower()


def classify_reply(
    code: int, text: str, *, stage: str = "dot", host: str | None = None
) -> AttemptResult:
    """An SMTP reply → AttemptResult: 2xx sent, 4xx transient, 5xx permanent.

    Exceptions: a 552 meaning "too many recipients" is transient; a code outside
    200-599 is a malformed reply, transient with no code (a broken server is not a
    verdict on the message). ``stage`` is the command the reply answers: mail, rcpt,
    data or dot (after the final dot).
    """
    text = _clean(text)
    if not 200 <= code <= 599:
        return AttemptResult("transient", host=host, text=f"malformed reply: {code} {text}")
    enhanced = parse_enhanced(code, text)
    if 200 <= code <= 299:
        return AttemptResult("sent", host=host, code=code, enhanced=enhanced, text=text)
    if 500 <= code <= 599 and not _too_many_recipients(code, enhanced, text, stage):
        return AttemptResult("permanent", host=host, code=code, enhanced=enhanced, text=text)
    retry_after = parse_retry_after(text) if 400 <= code <= 499 else None
    return AttemptResult(
        "transient", host=host, code=code, enhanced=enhanced, text=text, retry_after=retry_after
    )


def _result_from_error(exc: DeliveryError, envelope: Envelope) -> AttemptResult:
    permanent = isinstance(exc, PermanentDeliveryError)
    duplicate = isinstance(exc, ConnectionLost) and exc.after_dot
    text = _clean(str(exc))
    if duplicate:
        log.warning(
            "possible duplicate: %s lost after the final dot for message %s; "
            "it may have been delivered",
            exc.host,
            envelope.message_id,
        )
        text = f"possible duplicate: {text}"
    return AttemptResult(
        "permanent" if permanent else "transient",
        host=exc.host,
        code=exc.code,
        enhanced=exc.enhanced,
        text=text,
        retry_after=None if permanent else parse_retry_after(text),
        possible_duplicate=duplicate,
    )


# --------------------------------------------------------------------------- envelope

# No quoted local parts, no address literals, no whitespace or controls: anything a
# library could "helpfully" rewrite (aiosmtplib turns "bob@x\nX" into "bob@x") is refused.
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f<>()\[\]\\,;:\"\u2028\u2029]")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class _Address:
    wire: bytes  # local@a-label-domain, UTF-8
    domain: str  # A-label, lower case ("" for the null sender)
    utf8: bool  # the local part needs SMTPUTF8


def _address(value: str, what: str, *, null_ok: bool) -> _Address:
    if value == "" and null_ok:
        return _Address(b"", "", False)
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or len(local) > 64
        or len(value) > 254
        or _BAD_ADDRESS_CHARS.search(value)
    ):
        raise ValueError(f"{what} {value!r}")
    domain = domain.rstrip(".")
    if domain.isascii():
        a_label = domain
    else:
        try:  # dnspython as the IDNA encoder: its errors mean "not a domain name"
            a_label = dns.name.from_text(domain).to_text(omit_final_dot=True)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"{what} {value!r}: {exc}") from exc
    if not _HOSTNAME.fullmatch(a_label):
        raise ValueError(f"{what} {value!r}")
    utf8 = not local.isascii()
    return _Address(f"{local}@{a_label}".encode(), a_label.lower(), utf8)


def _crlf(data: bytes) -> bytes:
    """Every line end as CRLF; the regex only runs when a bare CR or LF is present."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data
    return _LINE_ENDS.sub(b"\r\n", data)


def _wire_body(data: bytes) -> bytes:
    """CRLF line ends everywhere and dot-stuffed (RFC 5321 §4.5.2), without the final dot.

    A stray LF or CR becomes CRLF before stuffing, so ``\\n.\\r\\n`` inside the body can
    never end the DATA phase early (SMTP smuggling).
    """
    body = _crlf(data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


@dataclass(frozen=True, slots=True)
class _Prepared:
    envelope: Envelope
    sender: _Address
    rcpt: _Address
    wire: bytes
    eightbit: bool


def _prepare(envelope: Envelope) -> _Prepared:
    try:
        sender = _address(envelope.mail_from, "sender", null_ok=True)
    except ValueError as exc:
        # our own Return-Path is wrong: permanent, but no enhanced code that would put
        # the *recipient* on the suppression list
        raise PermanentDeliveryError(f"invalid envelope sender: {exc}") from exc
    try:
        rcpt = _address(envelope.rcpt_to, "recipient", null_ok=False)
    except ValueError as exc:
        raise PermanentDeliveryError(
            f"invalid envelope recipient: {exc}", enhanced="5.1.3"
        ) from exc
    wire = _wire_body(envelope.data)
    return _Prepared(envelope, sender, rcpt, wire, not wire.isascii())


# --------------------------------------------------------------------------- pooling


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str  # what to connect to: a name (relay) or an IP address (direct)
    port: int
    label: str  # recorded as AttemptResult.host
    tls_name: str  # SNI and certificate name
    implicit_tls: bool = False
    starttls: StartTLS = "opportunistic"
    plaintext_fallback: bool = False  # opportunistic STARTTLS failed: retry in clear
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)


def _hang_up(smtp: aiosmtplib.SMTP) -> None:
    """Close a connection at once. ``SMTP.close()`` alone starts a polite TLS shutdown
    that a broken or vanished peer never answers, and the socket then outlives the
    event loop (an unclosed transport when the loop ends)."""
    transport = smtp.transport
    smtp.close()
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


@dataclass(slots=True, eq=False)
class _Conn:
    smtp: aiosmtplib.SMTP
    label: str
    opened: float
    last_used: float
    used: int = 0  # transactions completed on this connection (sent or refused)
    reused: bool = False
    broken: bool = False
    busy: bool = False  # inside a transaction; if still set on release, state is unknown


@dataclass(frozen=True, slots=True)
class _Limits:
    size: int
    max_per_connection: int
    max_age: float
    max_idle: float


class _Pool:
    """At most ``size`` connections to one endpoint: leased ones plus idle ones."""

    def __init__(self, endpoint: _Endpoint, limits: _Limits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.size)
        self.idle: list[_Conn] = []
        self.users = 0  # sends holding or waiting for a slot

    def reusable(self, conn: _Conn, now: float) -> bool:
        return (
            conn.smtp.is_connected
            and not conn.broken
            and not conn.busy
            and conn.used < self.limits.max_per_connection
            and now - conn.opened < self.limits.max_age
        )

    def take_idle(self, now: float) -> tuple[_Conn | None, list[_Conn]]:
        """The most recently used idle connection still fit for use, and the unfit ones."""
        unfit: list[_Conn] = []
        while self.idle:
            conn = self.idle.pop()
            if self.reusable(conn, now) and now - conn.last_used < self.limits.max_idle:
                conn.reused = True
                return conn, unfit
            unfit.append(conn)
        return None, unfit

    def expire_idle(self, now: float) -> list[_Conn]:
        keep = [
            c
            for c in self.idle
            if self.reusable(c, now) and now - c.last_used < self.limits.max_idle
        ]
        gone = [c for c in self.idle if c not in keep]
        self.idle = keep
        return gone


def _is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SMTPEngine:
    """Sessions, pooled connections and the one-recipient transaction, for relay and direct."""

    _sweep_every = 5.0

    def __init__(
        self,
        *,
        limits: _Limits,
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
        self._pools: dict[tuple[str, int], _Pool] = {}
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

    async def _open(self, ep: _Endpoint) -> _Conn:
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
            with _translated("connect", ep.label):
                await smtp.connect(timeout=t.connect)
            self.connections_opened += 1
            with _translated("ehlo", ep.label):
                await self._ehlo(smtp)
            encrypted = ep.implicit_tls
            if not encrypted and ep.starttls != "never":
                if smtp.supports_extension("starttls"):
                    try:
                        with _translated("starttls", ep.label):
                            await smtp.starttls(
                                server_hostname=ep.tls_name,
                                tls_context=self._tls,
                                timeout=t.command,
                            )
                            await self._ehlo(smtp)
                    except SessionError:
                        if ep.starttls == "opportunistic" and ep.plaintext_fallback:
                            _hang_up(smtp)
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
                with _translated("auth", ep.label):
                    await smtp.login(ep.username, str(ep.password or ""), timeout=t.command)
        except BaseException:
            _hang_up(smtp)
            raise
        now = time.monotonic()
        log.debug("%s: connection opened", ep.label)
        return _Conn(smtp, ep.label, opened=now, last_used=now)

    def _pool(self, ep: _Endpoint) -> _Pool:
        key = (ep.host, ep.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(ep, self.limits)
        return pool

    def _retire(self, conns: list[_Conn], *, polite: bool = True) -> None:
        """QUIT politely in the background (bounded by the quit timeout), or just close."""
        for conn in conns:
            if polite and conn.smtp.is_connected and not conn.broken and not conn.busy:
                task = asyncio.get_running_loop().create_task(self._quit(conn))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            else:
                _hang_up(conn.smtp)

    async def _quit(self, conn: _Conn) -> None:
        try:
            with contextlib.suppress(*_LIBRARY_ERRORS):
                await conn.smtp.quit(timeout=self.timeouts.quit)
        finally:
            _hang_up(conn.smtp)

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

    async def _deliver(self, ep: _Endpoint, msg: _Prepared) -> AttemptResult:
        """Send on a pooled connection; SessionError when no session could be had."""
        pool = self._pool(ep)
        pool.users += 1  # counted while waiting too, so the sweep never drops a busy pool
        try:
            async with pool.slots:
                return await self._deliver_on(pool, ep, msg)
        finally:
            pool.users -= 1

    async def _deliver_on(self, pool: _Pool, ep: _Endpoint, msg: _Prepared) -> AttemptResult:
        conn: _Conn | None = None
        try:
            conn, unfit = pool.take_idle(time.monotonic())
            self._retire(unfit)
            if conn is None:
                conn = await self._open(ep)
            try:
                return await self._transaction(conn, msg)
            except _Stale as stale:
                log.info("%s: idle connection was closed (%s); reopening once", ep.label, stale)
                _hang_up(conn.smtp)
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

    async def _command(self, conn: _Conn, stage: str, *args: bytes, timeout: float) -> SMTPResponse:
        try:
            with _translated(stage, conn.label):
                return await conn.smtp.execute_command(*args, timeout=timeout)
        except DeliveryError:
            conn.broken = True
            _hang_up(conn.smtp)
            raise

    async def _refused(self, conn: _Conn, reply: SMTPResponse, stage: str) -> AttemptResult:
        """A non-success reply to MAIL, RCPT or DATA: classify it, then RSET for reuse."""
        result = classify_reply(reply.code, reply.message, stage=stage, host=conn.label)
        if reply.code == 421 or not 200 <= reply.code <= 599 or not conn.smtp.is_connected:
            conn.broken = True
            _hang_up(conn.smtp)
            return result
        try:
            rset = await self._command(conn, "rset", b"RSET", timeout=self.timeouts.command)
        except DeliveryError:
            return result
        if rset.code != 250:
            conn.broken = True
            _hang_up(conn.smtp)
        return result

    async def _transaction(self, conn: _Conn, msg: _Prepared) -> AttemptResult:
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

    async def _steps(self, conn: _Conn, msg: _Prepared) -> AttemptResult:
        smtp, t = conn.smtp, self.timeouts
        options: list[bytes] = []
        if smtp.supports_extension("size"):
            options.append(b"SIZE=%d" % len(msg.wire))
        if msg.eightbit and smtp.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if msg.sender.utf8 or msg.rcpt.utf8:
            options.append(b"SMTPUTF8")
        mail_from = b"FROM:<" + msg.sender.wire + b">"
        try:
            reply = await self._command(
                conn, "mail", b"MAIL", mail_from, *options, timeout=t.command
            )
        except ConnectionLost as exc:
            if conn.reused:  # nothing of this message was acknowledged yet
                raise _Stale(str(exc)) from exc
            raise
        if reply.code == 421 and conn.reused:
            conn.broken = True
            raise _Stale(f"{reply.code} {_clean(reply.message)}")
        if reply.code != 250:
            return await self._refused(conn, reply, "mail")
        rcpt_to = b"TO:<" + msg.rcpt.wire + b">"
        reply = await self._command(conn, "rcpt", b"RCPT", rcpt_to, timeout=t.command)
        if reply.code not in (250, 251):
            return await self._refused(conn, reply, "rcpt")
        reply = await self._command(conn, "data", b"DATA", timeout=t.data)
        if reply.code != 354:
            return await self._refused(conn, reply, "data")
        reply = await self._send_body(conn, msg.wire)
        if not 200 <= reply.code <= 599:  # an answer, but no verdict: it may be stored
            conn.broken = True
            _hang_up(smtp)
            raise ConnectionLost(
                f"dot: malformed reply: {reply.code} {_clean(reply.message)}",
                stage="dot",
                host=conn.label,
                after_dot=True,
            )
        if reply.code == 421:
            conn.broken = True
            _hang_up(smtp)
        return classify_reply(reply.code, reply.message, stage="dot", host=conn.label)

    async def _send_body(self, conn: _Conn, wire: bytes) -> SMTPResponse:
        protocol = conn.smtp.protocol
        try:
            if protocol is None or protocol.transport is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before the body")
            with _translated("body", conn.label):
                protocol.write(wire)
                await _drain(cast(asyncio.WriteTransport, protocol.transport), self.timeouts)
                protocol.write(b".\r\n")
            # from here on the server may have the whole message
            with _translated("dot", conn.label):
                return await protocol.read_response(timeout=self.timeouts.final)
        except aiosmtplib.SMTPServerDisconnected as exc:
            conn.broken = True
            _hang_up(conn.smtp)
            raise _translate(exc, stage="body", host=conn.label) from exc
        except DeliveryError:
            conn.broken = True
            _hang_up(conn.smtp)
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


# --------------------------------------------------------------------------- relay


def _redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and repr."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    netloc, query_mark, query = netloc.partition("?")
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    return f"{scheme}{sep}{netloc}{query_mark}{query}{slash}{tail}"


class _Params:
    """Query parameters of a transport URL, each read once; leftovers are an error."""

    def __init__(self, url: str, allowed: set[str]) -> None:
        self.url = _redact(url)
        self.values: dict[str, str] = {}
        try:
            pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            self.fail(str(exc))
        for key, value in pairs:
            if key not in allowed:
                self.fail(f"unknown parameter {key!r} (known: {', '.join(sorted(allowed))})")
            if key in self.values:
                self.fail(f"parameter {key!r} given twice")
            self.values[key] = value

    def fail(self, problem: str) -> NoReturn:
        raise ConfigError(f"{SETTING}: {problem} in {self.url}")

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    def number(self, name: str, kind: type[int] | type[float]) -> float | None:
        raw = self.values.get(name)
        if raw is None:
            return None
        try:
            value = kind(raw)
        except ValueError:
            self.fail(f"{name} must be a number, not {raw!r}")
        if value <= 0:
            self.fail(f"{name} must be positive")
        return value

    def timeouts(self, base: Timeouts) -> Timeouts:
        changes = {
            name: value
            for name in ("connect", "command", "data", "final")
            if (value := self.number(f"{name}_timeout", float)) is not None
        }
        return replace(base, **changes)

    def starttls(self, default: StartTLS) -> StartTLS:
        raw = self.values.get("starttls")
        if raw is None:
            return default
        for mode in _STARTTLS_MODES:
            if raw.lower() == mode:
                return mode
        self.fail(f"starttls must be one of {', '.join(_STARTTLS_MODES)}, not {raw!r}")


_POOL_PARAMS = {"pool_size", "max_per_connection", "max_age", "max_idle", "helo"}
_TIMEOUT_PARAMS = {"connect_timeout", "command_timeout", "data_timeout", "final_timeout"}


def _pick(explicit: float | None, from_url: float | None, default: float) -> float:
    if explicit is not None:
        return explicit
    return default if from_url is None else from_url


class RelayTransport(_SMTPEngine):
    """Deliver everything through one smarthost, on a pool of persistent connections.

    URLs: ``smtp://host[:25]`` (STARTTLS when offered), ``smtp://host:587?starttls=required``
    (never plaintext), ``smtps://host[:465]`` (implicit TLS), with optional
    ``user:password@`` for AUTH (only over TLS, or to a loopback host). Parameters:
    ``starttls``, ``cafile``, ``helo``, ``pool_size``, ``max_per_connection``,
    ``max_age``, ``max_idle`` and ``connect_timeout``/``command_timeout``/
    ``data_timeout``/``final_timeout``; keyword arguments win over the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        max_per_connection: int | None = None,
        max_age: float | None = None,
        max_idle: float | None = None,
        timeouts: Timeouts | None = None,
        tls_context: ssl.SSLContext | None = None,
        helo: str | None = None,
    ) -> None:
        params = _Params(url, {"starttls", "cafile"} | _POOL_PARAMS | _TIMEOUT_PARAMS)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            params.fail(str(exc))
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            params.fail(f"relay URL must start with smtp:// or smtps://, not {scheme!r}")
        if not parts.hostname:
            params.fail("no host")
        if parts.path not in ("", "/") or parts.fragment:
            params.fail("unexpected path or fragment")
        implicit = scheme == "smtps"
        starttls = params.starttls("opportunistic")
        if implicit and "starttls" in params.values:
            params.fail("starttls does not apply to smtps:// (TLS from the first byte)")
        if tls_context is None:
            cafile = params.text("cafile")
            try:
                tls_context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                params.fail(f"cannot load cafile {cafile!r}: {exc}")
        host = parts.hostname
        port = port or (465 if implicit else 25)
        username = unquote(parts.username) if parts.username is not None else None
        password = Secret(unquote(parts.password)) if parts.password is not None else None
        self.url = params.url  # redacted
        self.endpoint = _Endpoint(
            host=host,
            port=port,
            label=f"{host}:{port}",
            tls_name=host,
            implicit_tls=implicit,
            starttls=starttls,
            username=username,
            password=password,
        )
        limits = _Limits(
            size=int(_pick(pool_size, params.number("pool_size", int), 4)),
            max_per_connection=int(
                _pick(max_per_connection, params.number("max_per_connection", int), 100)
            ),
            max_age=_pick(max_age, params.number("max_age", float), 300.0),
            max_idle=_pick(max_idle, params.number("max_idle", float), 60.0),
        )
        super().__init__(
            limits=limits,
            timeouts=timeouts or params.timeouts(RELAY_TIMEOUTS),
            helo=helo or params.text("helo"),
            tls_context=tls_context,
        )

    def __repr__(self) -> str:
        return f"RelayTransport({self.url!r}, pool_size={self.limits.size})"

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            self._check_open()
            self._sweep()
            return await self._deliver(self.endpoint, _prepare(envelope))
        except DeliveryError as exc:
            return _result_from_error(exc, envelope)


# --------------------------------------------------------------------------- direct


@dataclass(frozen=True, slots=True)
class _Cached:
    value: list[str]
    expires: float


class DirectTransport(_SMTPEngine):
    """Deliver to the recipient domain's MX hosts (RFC 5321 §5), pooled per host.

    MX records in preference order (equal preferences shuffled), the domain's own A/AAAA
    when it has no MX; NXDOMAIN → permanent (5.4.4), null MX "." → permanent (5.1.10),
    SERVFAIL or timeout → transient (4.4.3). A host that refuses, times out or fails the
    session setup is skipped for the next address/MX in the same attempt (at most
    ``max_addresses``). STARTTLS is opportunistic and unauthenticated, like Postfix's
    ``may`` level: certificates are not verified, a failed handshake is retried in clear.

    ``nameserver`` ("127.0.0.1:5353") or ``resolver`` (dnspython, sync or async)
    replace the system resolver; ``port`` replaces 25 (tests).
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver | dns.resolver.Resolver | None = None,
        *,
        nameserver: str | None = None,
        port: int = 25,
        helo: str | None = None,
        pool_size: int = 5,
        max_per_connection: int = 100,
        max_age: float = 300.0,
        max_idle: float = 30.0,
        timeouts: Timeouts | None = None,
        starttls: StartTLS = "opportunistic",
        max_addresses: int = 5,
        dns_lifetime: float = 10.0,
    ) -> None:
        if starttls not in _STARTTLS_MODES:
            raise ConfigError(f"{SETTING}: starttls must be one of {', '.join(_STARTTLS_MODES)}")
        if not 0 < port < 65536 or max_addresses < 1:
            raise ConfigError(f"{SETTING}: port must be 1-65535 and max_addresses >= 1")
        self.resolver = _async_resolver(resolver, nameserver, dns_lifetime)
        self.port = port
        self.starttls: StartTLS = starttls
        self.max_addresses = max_addresses
        self._mx_cache: dict[str, _Cached] = {}
        self._ip_cache: dict[str, _Cached] = {}
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(
            limits=_Limits(pool_size, max_per_connection, max_age, max_idle),
            timeouts=timeouts or DIRECT_TIMEOUTS,
            helo=helo,
            tls_context=context,
        )

    @classmethod
    def from_url(cls, url: str) -> DirectTransport:
        """``direct://[?port=25&nameserver=host:port&starttls=...&pool_size=5&...]``."""
        params = _Params(
            url,
            {"port", "nameserver", "starttls", "max_addresses"} | _POOL_PARAMS | _TIMEOUT_PARAMS,
        )
        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/"):
            params.fail("direct:// takes no host or path, only parameters")
        nameserver = params.text("nameserver")
        if nameserver is not None:
            _nameserver(nameserver, params)
        return cls(
            nameserver=nameserver,
            port=int(params.number("port", int) or 25),
            helo=params.text("helo"),
            pool_size=int(params.number("pool_size", int) or 5),
            max_per_connection=int(params.number("max_per_connection", int) or 100),
            max_age=params.number("max_age", float) or 300.0,
            max_idle=params.number("max_idle", float) or 30.0,
            timeouts=params.timeouts(DIRECT_TIMEOUTS),
            starttls=params.starttls("opportunistic"),
            max_addresses=int(params.number("max_addresses", int) or 5),
        )

    def __repr__(self) -> str:
        return f"DirectTransport(port={self.port}, pool_size={self.limits.size})"

    async def mx_hosts(self, domain: str) -> list[str]:
        """Mail hosts for ``domain`` in the order to try them (RFC 5321 §5.1)."""
        now = time.monotonic()
        cached = self._mx_cache.get(domain)
        if cached is not None and cached.expires > now:
            return list(cached.value)
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NoAnswer:
            return [domain]  # no MX: the domain itself is the implicit MX
        except dns.exception.DNSException as exc:
            raise _translate(exc, stage="mx", host=domain) from exc
        records = list(answer)
        if any(r.exchange == dns.name.root for r in records):
            raise PermanentDeliveryError(
                f"{domain}: domain accepts no mail (null MX, RFC 7505)",
                code=556,
                enhanced="5.1.10",
                host=domain,
            )
        records.sort(key=lambda r: (r.preference, random.random()))
        hosts = [r.exchange.to_text(omit_final_dot=True).lower() for r in records]
        if answer.rrset is not None and answer.rrset.ttl > 0:
            self._mx_cache[domain] = _Cached(hosts, now + min(answer.rrset.ttl, 300))
        return list(hosts)

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of a mail host."""
        now = time.monotonic()
        cached = self._ip_cache.get(host)
        if cached is not None and cached.expires > now:
            return list(cached.value)
        found: list[str] = []
        ttl = 300
        failure: BaseException | None = None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NoAnswer:
                continue
            except dns.exception.DNSException as exc:
                if isinstance(exc, dns.resolver.NXDOMAIN):
                    raise _translate(exc, stage="address-lookup", host=host) from exc
                failure = exc
                continue
            found.extend(r.to_text() for r in answer)
            if answer.rrset is not None:
                ttl = min(ttl, answer.rrset.ttl)
        if not found:
            if failure is not None:
                raise _translate(failure, stage="address-lookup", host=host) from failure
            raise PermanentDeliveryError(f"{host}: no address records", enhanced="5.4.4", host=host)
        if ttl > 0:
            self._ip_cache[host] = _Cached(found, now + ttl)
        return found

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            self._check_open()
            self._sweep()
            msg = _prepare(envelope)
            return await self._send_direct(msg)
        except DeliveryError as exc:
            return _result_from_error(exc, envelope)

    async def _send_direct(self, msg: _Prepared) -> AttemptResult:
        domain = msg.rcpt.domain
        errors: list[DeliveryError] = []
        tried = 0
        for mx in await self.mx_hosts(domain):
            try:
                ips = await self.addresses(mx)
            except DeliveryError as exc:
                errors.append(exc)
                continue
            for ip in ips:
                if tried >= self.max_addresses:
                    break
                tried += 1
                label = f"{mx}[{ip}]:{self.port}"
                ep = _Endpoint(
                    host=ip,
                    port=self.port,
                    label=label,
                    tls_name=mx,
                    starttls=self.starttls,
                    plaintext_fallback=self.starttls == "opportunistic",
                )
                try:
                    return await self._deliver(ep, msg)
                except SessionError as exc:
                    log.info("%s: %s; trying the next mail host", label, exc)
                    errors.append(exc)
        if not errors:
            raise TransientDeliveryError(f"{domain}: no mail host could be tried", host=domain)
        transient = [e for e in errors if not isinstance(e, PermanentDeliveryError)]
        raise transient[-1] if transient else errors[0]


def _nameserver(value: str, params: _Params | None = None) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = value, "53"
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError(port)
    except ValueError as exc:
        problem = f"nameserver must be IP[:port], not {value!r}"
        if params is not None:
            params.fail(problem)
        raise ConfigError(f"{SETTING}: {problem}") from exc
    return host, number


def _async_resolver(
    resolver: dns.asyncresolver.Resolver | dns.resolver.Resolver | None,
    nameserver: str | None,
    lifetime: float,
) -> dns.asyncresolver.Resolver:
    if isinstance(resolver, dns.asyncresolver.Resolver):
        return resolver
    if resolver is not None:  # a sync resolver: same servers, asynchronous queries
        result = dns.asyncresolver.Resolver(configure=False)
        result.nameservers = list(resolver.nameservers)
        result.port = resolver.port
        result.timeout = resolver.timeout
        result.lifetime = resolver.lifetime
        return result
    if nameserver is not None:
        host, port = _nameserver(nameserver)
        result = dns.asyncresolver.Resolver(configure=False)
        result.nameservers = [host]
        result.port = port
    else:
        try:
            result = dns.asyncresolver.Resolver()
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{SETTING}: no usable system resolver: {exc}") from exc
    result.lifetime = lifetime
    result.timeout = min(result.timeout, lifetime)
    return result


# --------------------------------------------------------------------------- capture

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]+")


def _safe_id(message_id: str) -> str:
    name = _UNSAFE_NAME.sub("_", message_id.strip().strip("<>")).strip("._")
    return name[:100] or "message"


class CaptureTransport:
    """The embedded default: every message becomes ``mail_dir/<UTC time>-<message id>.eml``.

    The file is the message as it would have been sent, preceded by ``Return-Path``
    and ``Delivered-To`` for the envelope; it is written to a temporary file, fsync'd
    and linked into place, so a reader never sees half a message.
    """

    host = "capture"

    def __init__(self, mail_dir: Path | str) -> None:
        self.mail_dir = Path(mail_dir)

    def __repr__(self) -> str:
        return f"CaptureTransport({str(self.mail_dir)!r})"

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            msg = _prepare(envelope)
            path = await asyncio.to_thread(self._write, msg)
        except DeliveryError as exc:
            return _result_from_error(exc, envelope)
        return AttemptResult("sent", host=self.host, text=f"captured as {path}")

    def _write(self, msg: _Prepared) -> Path:
        env = msg.envelope
        head = b"Return-Path: <" + msg.sender.wire + b">\r\nDelivered-To: " + msg.rcpt.wire
        content = head + b"\r\n" + _crlf(env.data)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        base = f"{stamp}-{_safe_id(env.message_id)}"
        tmp = self.mail_dir / f".{base}.{uuid.uuid4().hex}.tmp"
        try:
            with _translated("capture", self.host):
                self.mail_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                try:
                    view = memoryview(content)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                for n in range(1000):  # link() never overwrites an existing capture
                    path = self.mail_dir / (f"{base}.eml" if n == 0 else f"{base}-{n}.eml")
                    try:
                        os.link(tmp, path)
                        break
                    except FileExistsError:
                        continue
                else:
                    raise FileExistsError(f"too many captures named {base}")
                dir_fd = os.open(self.mail_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        finally:
            with contextlib.suppress(OSError):  # gone already, or never created
                tmp.unlink()
        return path

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- factory


def transport_from_url(url: str | None, mail_dir: Path | str) -> Transport:
    """The transport for ``NOTIFIER_SMTP_URL``: unset → capture under ``mail_dir``."""
    if url is None or not url.strip():
        return CaptureTransport(mail_dir)
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("smtp", "smtps"):
        return RelayTransport(url)
    if scheme == "direct":
        return DirectTransport.from_url(url)
    raise ConfigError(
        f"{SETTING}: unsupported URL {_redact(url)!r}; use smtp://host:port, "
        "smtps://host:port, direct:// or leave it unset to capture mail locally"
    )
