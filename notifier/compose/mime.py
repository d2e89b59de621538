"""MIME: a rendered message → RFC 5322 bytes (CRLF), ready to sign and send.

``multipart/alternative`` (text, then HTML), UTF-8 (text quoted-printable so it stays
readable in the raw source, HTML base64), RFC 2047
encoded Subject and display names. Built by hand rather than with ``email.message``:
it is several times faster, and every header value passes one guard that refuses CR,
LF and NUL, so no input can ever create a header (CVE-2024-6923).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from ..errors import HeaderInjection
from ..fields import domain_to_ascii
from .render import Rendered
from .sender import Sender

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- ]+$")
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
CRLF = "\r\n"
_B64_LINE = re.compile(rb".{1,76}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Unsigned message bytes plus what SMTP needs."""

    message_id: str
    mail_from: str  # envelope sender (Return-Path)
    rcpt_to: str
    data: bytes
    sha256: str


def guard(value: str, what: str) -> str:
    if _UNSAFE.search(value):
        raise HeaderInjection(f"{what}: line break or control character in a header value")
    return value


#: RFC 2047 §2: a line that carries encoded-words is at most 76 octets
ENCODED_LINE = 76


def _encoded(text: str, used: int = 1) -> list[str]:
    """RFC 2047 ``B`` encoded-words of at most 72 characters (the limit is 75), split on
    character boundaries: 45 bytes of UTF-8 become 60 base64 characters. The first word
    is shorter when what precedes it on its line (``used``, e.g. ``Subject: ``) would
    take the line past 76 octets; each later word has a line of its own after one space."""
    raw = text.encode("utf-8")
    limit = min(45, (ENCODED_LINE - used - 12) // 4 * 3)
    words: list[str] = []
    start = 0
    while start < len(raw):
        end = min(start + limit, len(raw))
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # not inside a character
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(raw[start:end]).decode("ascii") + "?=")
        start, limit = end, 45
    return words


def encode_words(text: str, used: int = 1) -> str:
    """RFC 2047 ``B`` encoded-words, split on character boundaries, folded with CRLF SP."""
    return (CRLF + " ").join(_encoded(text, used))


#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998
WIDTH = 78
_PIECES = re.compile(r" *[^ ]+| +")

#: (whitespace before, text): the units a header value is folded between
Unit = tuple[str, str]


def _fold(units: list[Unit], used: int) -> str:
    """Join ``units``, starting a new line before one that would take the line past 78
    characters (``used``: what the header's name takes on the first line). A unit is
    never split, and each unit after the first starts with whitespace, so the fold is
    FWS (RFC 5322 §2.2.3) and unfolding gives the value back."""
    lines: list[str] = []
    line = ""
    room = WIDTH - used
    for sep, text in units:
        if line and sep and len(line) + len(sep) + len(text) > room:
            lines.append(line)
            line, room = sep + text, WIDTH
        else:
            line += sep + text
    lines.append(line)
    return CRLF.join(lines)


def _text_units(value: str, used: int) -> list[Unit]:
    """Words separated by spaces, each with the spaces before it. A word too long for
    any line (a 3,000-character invoice number has nowhere to fold) goes out as
    encoded-words instead, with any long words next to it, so that the space between
    them survives decoding (RFC 2047 §6.2 drops space between encoded-words)."""
    units: list[Unit] = []
    run, run_sep = "", ""
    for i, piece in enumerate(_PIECES.findall(value)):
        if len(piece) <= (WIDTH - used if i == 0 else WIDTH):
            if run:
                units += _encoded_units(run, run_sep)
                run = ""
            word = piece.lstrip(" ")
            units.append((piece[: len(piece) - len(word)], word))
        elif run:
            run += piece
        else:  # one space stays outside, as the fold point; the rest is encoded
            run_sep = piece[:1] if piece.startswith(" ") else ""
            run = piece[len(run_sep) :]
    if run:
        units += _encoded_units(run, run_sep)
    return units


def _encoded_units(text: str, sep: str) -> list[Unit]:
    words = _encoded(text)
    return [(sep, words[0])] + [(" ", word) for word in words[1:]]


def header_text(value: str, what: str, used: int = len("Subject: ")) -> str:
    """An unstructured header value (Subject): ASCII as is, folded at spaces, words too
    long to fold as encoded-words; other text as encoded-words. No line exceeds 998
    octets whatever the input; lines of words stay within 78 characters."""
    guard(value, what)
    if value.isascii() and "=?" not in value:
        if used + len(value) <= WIDTH:
            return value
        return _fold(_text_units(value, used), used)
    return encode_words(value, used)


def addr_spec(email: str) -> str:
    guard(email, "address")
    local, at, domain = email.rpartition("@")
    if not at or not local or not _LOCAL.match(local) or ".." in local:
        raise HeaderInjection(f"invalid e-mail address {email!r}")
    return f"{local}@{domain_to_ascii(domain)}"


def address(name: str | None, email: str, used: int = len("Reply-To: ")) -> str:
    """``Display Name <local@domain>`` with the name quoted or encoded as needed, folded
    so that a long name never makes a long line (``used``: the header name's share)."""
    spec = addr_spec(email)
    if not name:
        return spec
    guard(name, "display name")
    name = " ".join(name.split())
    units: list[Unit]
    if not name.isascii() or "=?" in name:
        units = _encoded_units(name, "")
    elif _ATOM.match(name):
        if used + len(name) + len(spec) + 3 <= WIDTH:  # the usual: one line, as written
            return f"{name} <{spec}>"
        units = _text_units(name, used)  # atoms fold between words
    else:
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        units = [("", quoted)] if used + len(quoted) <= WIDTH else _encoded_units(name, "")
    return _fold([*units, (" ", f"<{spec}>")], used)


def _qp(text: str) -> bytes:
    if "\r" in text:  # rare; testing one character is far cheaper than replacing two
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    # b2a_qp keeps bare LF; SMTP wants CRLF. A leading dot is escaped so that no line is
    # ever a lone "." (some MTAs mishandle it even with dot-stuffing).
    if encoded.startswith(b"."):
        encoded = b"=2E" + encoded[1:]
    return encoded.replace(b"\n.", b"\n=2E").replace(b"\n", b"\r\n")


def _b64(text: str) -> bytes:
    """HTML goes base64: several times cheaper to encode than quoted-printable for the
    long, mostly-markup lines of a mail layout, and immune to line-length limits."""
    enc = base64.b64encode(text.encode("utf-8"))
    # lines cut by the regex engine: faster than slicing in Python, and far faster than
    # base64.encodebytes, which loops in Python over 57-byte pieces
    return b"\r\n".join(_B64_LINE.findall(enc)) + b"\r\n" if enc else b""


def new_message_id(domain: str) -> str:
    """A Message-ID on ``domain`` (the signer's: the sender decision picks it)."""
    return f"<{uuid.uuid4().hex}@{domain}>"


def build(
    rendered: Rendered,
    sender: Sender,
    *,
    message_id: str,
    date: datetime | None = None,
) -> Outgoing:
    """Assemble the message with the From, Reply-To and envelope sender that
    ``sender`` (the sender decision) gives."""
    guard(message_id, "message_id")
    date = date or datetime.now(UTC)
    headers = [
        ("From", address(sender.display_name, sender.from_address, len("From: "))),
        ("To", address(rendered.recipient.name, rendered.recipient.email, len("To: "))),
    ]
    if sender.reply_to:
        headers.append(("Reply-To", address(sender.display_name, sender.reply_to)))
    headers += [
        ("Subject", header_text(rendered.subject, "subject")),
        ("Date", format_datetime(date.astimezone(sender.brand.tz))),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]
    boundary = "=_" + hashlib.blake2b(message_id.encode(), digest_size=12).hexdigest()
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    headers.append(("Content-Language", rendered.language))
    headers.append(("Auto-Submitted", "auto-generated"))
    if not rendered.mandatory and rendered.unsubscribe_url:
        headers.append(("List-Unsubscribe", f"<{guard(rendered.unsubscribe_url, 'unsubscribe')}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    head = CRLF.join(f"{k}: {v}" for k, v in headers).encode("ascii")
    b = boundary.encode("ascii")
    text_head = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    html_head = (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    data = b"".join(
        (
            head,
            b"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--",
            b,
            b"\r\n",
            text_head,
            _qp(rendered.text),
            b"\r\n--",
            b,
            b"\r\n",
            html_head,
            _b64(rendered.html),
            b"\r\n--",
            b,
            b"--\r\n",
        )
    )
    rcpt = addr_spec(rendered.recipient.email)
    return Outgoing(
        message_id=message_id,
        mail_from=addr_spec(sender.mail_from),
        rcpt_to=rcpt,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )
