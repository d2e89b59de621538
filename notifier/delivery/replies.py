"""What an SMTP server's reply means: sent, transient or permanent, and for how long to wait.

Pure functions over a reply code and text (no I/O), shared by every transport and by
the error translation in :mod:`notifier.delivery.failures`.
"""

from __future__ import annotations

import re

from .transport import AttemptResult

__all__ = ["classify_reply", "clean_text", "parse_enhanced", "parse_retry_after"]

_MAX_TEXT = 1000  # characters of a server reply kept in a result
_MAX_RETRY_AFTER = 24 * 3600.0

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_RETRY = re.compile(
    r"\b(?:try|retry|come\s+back)\b[^.\d]{0,30}?\b(?:in|after)\s+(\d{1,6}(?:\.\d+)?)\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b",
    re.IGNORECASE,
)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: str) -> str:
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
    text = clean_text(text)
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
