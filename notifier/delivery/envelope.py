"""An envelope made safe for the wire: checked addresses, CRLF line ends, dot-stuffing.

Every transport prepares an :class:`~notifier.delivery.transport.Envelope` the same way
before it sends or captures it, so a bad address is refused identically everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.exception
import dns.name

from ..errors import PermanentDeliveryError
from .transport import Envelope

__all__ = ["Address", "Prepared", "crlf", "prepare"]

# No quoted local parts, no address literals, no whitespace or controls: anything a
# library could "helpfully" rewrite (aiosmtplib turns "bob@x\nX" into "bob@x") is refused.
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f<>()\[\]\\,;:\"\u2028\u2029]")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Address:
    """An envelope address as sent: A-label domain, and whether it needs SMTPUTF8."""

    wire: bytes  # local@a-label-domain, UTF-8
    domain: str  # A-label, lower case ("" for the null sender)
    utf8: bool  # the local part needs SMTPUTF8


def _address(value: str, what: str, *, null_ok: bool) -> Address:
    if value == "" and null_ok:
        return Address(b"", "", False)
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
    return Address(f"{local}@{a_label}".encode(), a_label.lower(), utf8)


def crlf(data: bytes) -> bytes:
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
    body = crlf(data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


@dataclass(frozen=True, slots=True)
class Prepared:
    """An envelope ready to send: checked addresses and the dot-stuffed body."""

    envelope: Envelope
    sender: Address
    rcpt: Address
    wire: bytes
    eightbit: bool


def prepare(envelope: Envelope) -> Prepared:
    """Check both addresses and build the body; a bad address is permanent, not retried."""
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
    return Prepared(envelope, sender, rcpt, wire, not wire.isascii())
