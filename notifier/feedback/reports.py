"""What an inbound report is: an RFC 3464 DSN, a non-standard bounce, an RFC 5965 ARF
complaint, an RFC 3834 auto-reply, or something nobody could read.

The standards come first, read here field by field (they carry the enhanced status
code and the diagnostic that evidence needs); the many non-standard formats (Exim,
qmail, old Postfix, Exchange, Yahoo, …) go to flufl.bounce, GNU Mailman's well-kept
detector library, which names the failed addresses; the status code is then taken
from the text when it has one. Parsing never raises: anything unreadable is
``unparsable`` and kept for ops with its raw bytes.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr
from typing import Literal

from flufl.bounce import all_failures

from . import fastdsn

# flufl.bounce logs every detector it runs at INFO and its own exceptions at ERROR;
# we catch those (a report it cannot read is kept as unparsable) and log our own
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

__all__ = ["KINDS", "Kind", "Report", "parse"]

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "auto_reply", "other", "unparsable"]
#: every kind, in the order ops read them
KINDS: tuple[Kind, ...] = (
    "hard_bounce",
    "soft_bounce",
    "complaint",
    "auto_reply",
    "other",
    "unparsable",
)

_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<!\d)([245][0-9][0-9])(?=[ -])")
_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_MAX_DIAGNOSTIC = 500
_SEVERITY = {"failed": 3, "delayed": 2}


@dataclass(frozen=True, slots=True)
class Report:
    """One inbound report as read from its bytes."""

    kind: Kind
    #: how it was read: rfc3464, rfc5965, rfc3834, flufl.bounce, none
    format: str
    #: the address the report is about (Final-Recipient, Original-Rcpt-To, …)
    recipient: str | None = None
    #: DSN Action (failed, delayed, delivered, relayed, expanded)
    action: str | None = None
    #: enhanced status code (RFC 3463), e.g. 5.1.1
    status: str | None = None
    #: the remote SMTP reply code, e.g. 550
    code: int | None = None
    diagnostic: str | None = None
    #: Message-ID of the original message, when the report quotes it
    original_message_id: str | None = None
    #: ARF Feedback-Type (abuse, fraud, …)
    feedback_type: str | None = None

    @property
    def suppresses(self) -> bool:
        """A 5.1.x hard bounce (the address does not exist) or a complaint."""
        if self.kind == "complaint":
            return True
        return self.kind == "hard_bounce" and (self.status or "").startswith("5.1.")


def parse(raw: bytes) -> Report:
    """Classify one report (never raises)."""
    return parse_fast(raw) or parse_full(raw)


def parse_fast(raw: bytes) -> Report | None:
    """A plain RFC 3464 DSN read without the email parser (:mod:`.fastdsn`: about a
    tenth of the time), or None when it is anything else; never raises."""
    read = fastdsn.read(raw)
    if read is None:
        return None
    try:
        return _dsn_report(*read)
    except Exception:
        return None


def parse_full(raw: bytes) -> Report:
    """Classify one report with the email parser and flufl.bounce (never raises)."""
    try:
        msg = email.message_from_bytes(raw)
        return _classify(msg)
    except Exception as exc:  # a library choking on hostile input: keep it for ops
        return Report("unparsable", "none", diagnostic=f"{type(exc).__name__}: {exc}"[:200])


def _classify(msg: Message) -> Report:
    report_type = (msg.get_param("report-type") or "") if msg.is_multipart() else ""
    report_type = str(report_type).lower()
    if msg.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _arf(msg)
    dsn = _find(msg, "message/delivery-status")
    if dsn is not None:
        return _dsn(msg, dsn)
    arf = _find(msg, "message/feedback-report")
    if arf is not None:
        return _arf(msg)
    heuristic = _flufl(msg)
    if heuristic is not None:
        return heuristic
    if _auto_reply(msg):
        replied = str(msg.get("In-Reply-To", "")).strip() or None
        return Report(
            "auto_reply",
            "rfc3834",
            recipient=parseaddr(str(msg.get("From", "")))[1] or None,
            original_message_id=_original_id(msg) or replied,
        )
    return Report("unparsable", "none", original_message_id=_original_id(msg))


# --- RFC 3464 -----------------------------------------------------------------------------


def _dsn(msg: Message, part: Message) -> Report:
    return _dsn_report([_fields(b) for b in _blocks(part)], _original_id(msg))


def _dsn_report(blocks: list[dict[str, str]], original_message_id: str | None) -> Report:
    """The report a DSN's blocks make (fields as :func:`_fields` gives them)."""
    per_recipient = blocks[1:] or blocks
    best = max(per_recipient, key=lambda b: _SEVERITY.get(b.get("action", "").lower(), 0))
    action = best.get("action", "").lower() or None
    status = _first(_ENHANCED, best.get("status", ""))
    diagnostic = best.get("diagnostic-code", "")
    text = diagnostic.partition(";")[2].strip() if ";" in diagnostic else diagnostic
    code = _first(_REPLY_CODE, text + " ")
    detailed = _first(_ENHANCED, text)
    if status is None or (status.endswith(".0.0") and detailed and detailed[0] == status[0]):
        status = detailed or status  # Exim writes 5.0.0 and puts 5.1.1 in the diagnostic
    kind = _dsn_kind(action, status)
    return Report(
        kind,
        "rfc3464",
        recipient=_address(best.get("final-recipient") or best.get("original-recipient", "")),
        action=action,
        status=status,
        code=int(code) if code else None,
        diagnostic=_clip(text) or None,
        original_message_id=original_message_id,
    )


def _dsn_kind(action: str | None, status: str | None) -> Kind:
    """5.x.x is hard and 4.x.x soft (a 4.4.7 "gave up" too: the address may exist);
    ``delayed`` is soft; positive DSNs (delivered, relayed, expanded) are ``other``."""
    klass = (status or "")[:1]
    if action == "failed":
        return "soft_bounce" if klass == "4" else "hard_bounce"
    if action == "delayed":
        return "soft_bounce"
    if action is None and klass in ("4", "5"):
        return "hard_bounce" if klass == "5" else "soft_bounce"
    return "other"


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)] or [Message()]
    text = payload if isinstance(payload, str) else ""
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [email.parser.HeaderParser().parsestr(c) for c in chunks if c.strip()] or [Message()]


# --- RFC 5965 -----------------------------------------------------------------------------


def _arf(msg: Message) -> Report:
    part = _find(msg, "message/feedback-report")
    fields = _blocks(part)[0] if part is not None else Message()
    recipient = _address(_field(fields, "Original-Rcpt-To"))
    original = _find(msg, "message/rfc822") or _find(msg, "text/rfc822-headers")
    if recipient is None and original is not None:
        recipient = _address(_headers_of(original).get("To", ""))
    return Report(
        "complaint",
        "rfc5965",
        recipient=recipient,
        feedback_type=(_field(fields, "Feedback-Type").lower() or "abuse"),
        diagnostic=_clip(_field(fields, "User-Agent")) or None,
        original_message_id=_original_id(msg),
    )


# --- non-standard bounces and auto-replies --------------------------------------------------


def _flufl(msg: Message) -> Report | None:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a heuristic detector choking on an odd message: not a bounce
        return None
    if not temporary and not permanent:
        return None
    found = sorted(permanent or temporary)
    text = _text(msg)
    status = _first(_ENHANCED, text)
    code = _first(_REPLY_CODE, text)
    kind: Kind = "hard_bounce" if permanent else "soft_bounce"
    if permanent and status is not None and status.startswith("4"):
        status = None  # a 4.x.x in a permanent failure's text is not its status
    return Report(
        kind,
        "flufl.bounce",
        recipient=found[0].decode("utf-8", "replace"),
        action="failed" if permanent else "delayed",
        status=status,
        code=int(code) if code else None,
        diagnostic=_clip(_diagnostic_line(text, status, code)) or None,
        original_message_id=_original_id(msg),
    )


def _auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    return str(msg.get("Precedence", "")).strip().lower() == "auto_reply"


# --- helpers ------------------------------------------------------------------------------


def _walk(msg: Message) -> Iterator[Message]:
    yield msg
    payload = msg.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message) and msg.get_content_type() != "message/delivery-status":
                yield from _walk(part)


def _find(msg: Message, content_type: str) -> Message | None:
    for part in _walk(msg):
        if part.get_content_type() == content_type:
            return part
    return None


def _headers_of(part: Message) -> Message:
    """The original message's headers from message/rfc822 or text/rfc822-headers."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    body = part.get_payload(decode=True)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(payload)
    return email.parser.HeaderParser().parsestr(text)


def _original_id(msg: Message) -> str | None:
    for content_type in ("message/rfc822", "text/rfc822-headers"):
        part = _find(msg, content_type)
        if part is not None:
            value = str(_headers_of(part).get("Message-ID", "")).strip()
            if value:
                return value
    found = _MESSAGE_ID.search(_text(msg))  # a bounce quoting the original in its text
    return found.group(1) if found else None


def _text(msg: Message) -> str:
    out = []
    for part in _walk(msg):
        if part.get_content_maintype() == "text":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                out.append(body.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(out)


def _diagnostic_line(text: str, status: str | None, code: str | None) -> str:
    needle = status or code
    for line in text.splitlines():
        if needle and needle in line:
            return line.strip()
    return ""


def _field(block: Message, name: str) -> str:
    return " ".join(str(block.get(name, "")).split())


def _fields(block: Message) -> dict[str, str]:
    """A block's fields by lower-cased name (the first of each), as :func:`_field` reads them."""
    out: dict[str, str] = {}
    for name, value in block.items():
        out.setdefault(name.lower(), " ".join(str(value).split()))
    return out


def _address(value: str) -> str | None:
    """``rfc822; bob@example.fi`` → ``bob@example.fi``."""
    address = value.partition(";")[2] if ";" in value else value
    address = address.strip().strip("<>").strip()
    return address or None


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text[:_MAX_DIAGNOSTIC]
