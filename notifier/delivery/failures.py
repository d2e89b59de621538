"""What went wrong, said once: library exceptions → :class:`DeliveryError` → :class:`AttemptResult`.

Third-party exceptions (aiosmtplib, dnspython, ``OSError``) are translated into the
:class:`~notifier.errors.DeliveryError` tree in one place, :func:`translate`, always
with ``raise ... from exc``; a transport's ``send`` turns a ``DeliveryError`` into a
result with :func:`result_from_error`, so it never raises for an SMTP-level outcome.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import aiosmtplib
import dns.exception
import dns.resolver

from ..errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from .replies import clean_text, parse_enhanced, parse_retry_after
from .transport import AttemptResult, Envelope

__all__ = [
    "LIBRARY_ERRORS",
    "ConnectionLost",
    "SessionError",
    "result_from_error",
    "translate",
    "translated",
]

log = logging.getLogger(__name__)

#: stages whose failure means "no session": try the next host (direct) or later
_SETUP_STAGES = frozenset({"connect", "ehlo", "starttls", "auth"})


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


def translate(exc: BaseException, *, stage: str, host: str | None) -> DeliveryError:
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
        text = clean_text(exc.message)
        message = f"{stage}: {exc.code} {text}"
        enhanced = parse_enhanced(exc.code, text)
        if stage in _SETUP_STAGES:
            return SessionError(message, code=exc.code, enhanced=enhanced, host=host)
        return TransientDeliveryError(message, code=exc.code, enhanced=enhanced, host=host)
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # code -1: unparseable reply
        message = f"{stage}: malformed or over-long reply: {clean_text(exc.message)}"
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


LIBRARY_ERRORS = (aiosmtplib.SMTPException, OSError, dns.exception.DNSException)


@contextlib.contextmanager
def translated(stage: str, host: str | None) -> Iterator[None]:
    """Run the block as ``stage`` against ``host``; library errors leave as DeliveryErrors."""
    try:
        yield
    except LIBRARY_ERRORS as exc:
        raise translate(exc, stage=stage, host=host) from exc


def result_from_error(exc: DeliveryError, envelope: Envelope) -> AttemptResult:
    """The attempt's result for a failure; after the final dot it is a possible duplicate."""
    permanent = isinstance(exc, PermanentDeliveryError)
    duplicate = isinstance(exc, ConnectionLost) and exc.after_dot
    text = clean_text(str(exc))
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
