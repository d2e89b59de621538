"""The narrow delivery interface between the worker and the wire.

A :class:`Transport` takes one :class:`Envelope` and returns one :class:`AttemptResult`
— it never raises for an SMTP-level outcome, so the worker records every attempt the
same way. Implementations: relay (pooled SMTP connections), direct (MX lookup), and
capture (the embedded default: an .eml per message under ``var/mail/``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

Outcome = Literal["sent", "transient", "permanent"]
_NO_SUCH_USER = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"})


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    mail_from: str
    rcpt_to: str
    data: bytes  # signed RFC 5322 bytes, CRLF line ends
    #: awaited once the transport holds what it sends on (a pooled connection), just
    #: before the transaction: the worker holds sends there while too many 250s wait to
    #: be recorded, since each of them is sent again if the worker is killed
    ready: Callable[[], Awaitable[None]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    host: str | None = None
    code: int | None = None
    enhanced: str | None = None  # e.g. "5.1.1"
    text: str = ""
    #: the server asked us to wait this long (seconds) before trying again
    retry_after: float | None = None
    #: the connection died after the final dot: the message may have been delivered
    possible_duplicate: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def no_such_user(self) -> bool:
        """The recipient does not exist (RFC 3463 5.1.x about the *recipient*; 5.1.7 and
        5.1.8 are about our sender and must not suppress anyone)."""
        return self.outcome == "permanent" and self.enhanced in _NO_SUCH_USER


class Transport(Protocol):
    async def send(self, envelope: Envelope) -> AttemptResult: ...

    async def close(self) -> None: ...
