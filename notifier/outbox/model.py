"""Outbox values: message states, the records the store reads and writes, and the
outbox's own settings (a slice of :class:`notifier.config.Settings`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..delivery.transport import AttemptResult
from ..errors import Conflict, NotifierError

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"
    FAILED = "failed"
    HELD = "held"
    SUPPRESSED = "suppressed"
    #: a hard bounce (5.x.x) arrived after ``sent``: final, reached only from ``sent``
    BOUNCED = "bounced"


#: states a worker may claim once ``next_attempt_at`` has passed
DUE: tuple[Status, ...] = (Status.QUEUED, Status.DEFERRED)
#: states that never change again on their own (purged after the retention period)
FINAL: tuple[Status, ...] = (
    Status.SENT,
    Status.CANCELLED,
    Status.FAILED,
    Status.SUPPRESSED,
    Status.BOUNCED,
)
#: states a cancelling event (``domain.renewed`` …) moves to ``cancelled``
CANCELLABLE: tuple[Status, ...] = (Status.QUEUED, Status.DEFERRED, Status.HELD)
#: states ``queue retry`` moves back to ``queued``
RETRYABLE: tuple[Status, ...] = (Status.FAILED, Status.DEFERRED, Status.HELD)


class MessageNotFound(NotifierError):
    """No message with that id (HTTP 404)."""


class InvalidState(Conflict):
    """The message is in a state that does not allow the operation (HTTP 409)."""


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxConfig:
    """Retry schedule, lifetimes, lease and retention: the outbox's slice of
    :class:`notifier.config.Settings` (``settings.outbox_config()``)."""

    #: waits after the 1st, 2nd, 3rd … failed attempt (RFC 5321 §4.5.4.1 style)
    retry_delays: tuple[float, ...] = (5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE)
    #: after those, wait a random time in this range between attempts
    retry_interval: tuple[float, float] = (1 * HOUR, 2 * HOUR)
    #: ± this fraction of random jitter on every wait
    retry_jitter: float = 0.10
    #: give up (failed, 4.4.7) when a message is still undelivered this long after acceptance
    max_lifetime: float = 4 * DAY
    #: shorter lifetimes for events whose mail is useless when late, by event name
    lifetimes: Mapping[str, float] = field(default_factory=dict)
    #: a worker reaching a message more than this past its deadline fails it unsent
    expiry_grace: float = 1 * HOUR
    #: how long a claim stays valid without a heartbeat
    lease: float = 15 * MINUTE
    #: keep final messages (signed bytes, attempts) this long, then ``purge`` deletes them
    retention: float = 730 * DAY
    #: SQLite: wait this long for a lock before failing with StorageError
    busy_timeout: float = 5.0
    #: largest accepted batch
    max_batch: int = 1000
    #: worker processes that validate and render large batches (0: in-process; see
    #: :mod:`notifier.intake.preparer`). ``notifier serve`` uses one per core.
    intake_processes: int = 0

    def __post_init__(self) -> None:
        if not self.retry_delays and not self.retry_interval:
            raise NotifierError("retry schedule is empty")
        if any(d <= 0 for d in self.retry_delays):
            raise NotifierError("retry_delays: every delay must be positive")
        low, high = self.retry_interval
        if not 0 < low <= high:
            raise NotifierError("retry_interval: need 0 < low <= high")
        if not 0 <= self.retry_jitter < 0.5:
            raise NotifierError("retry_jitter: must be in [0, 0.5)")
        if self.max_lifetime <= 0 or any(v <= 0 for v in self.lifetimes.values()):
            raise NotifierError("lifetimes must be positive")
        if self.expiry_grace < 0:
            raise NotifierError("expiry_grace must not be negative")
        if self.lease <= 0 or self.retention <= 0 or self.busy_timeout < 0:
            raise NotifierError("lease and retention must be positive")
        if self.max_batch < 1:
            raise NotifierError("max_batch must be at least 1")
        if self.intake_processes < 0:
            raise NotifierError("intake_processes must not be negative")

    def lifetime(self, event: str) -> float:
        return self.lifetimes.get(event, self.max_lifetime)


# --- records ---------------------------------------------------------------------------


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``accept`` returns for one event."""

    id: int
    status: Status
    language: str
    duplicate: bool
    message_id: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "language": self.language,
            "duplicate": self.duplicate,
            "message_id": self.message_id,
        }


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One delivery attempt, kept as evidence."""

    at: datetime
    worker: str | None
    outcome: str  # sent | transient | permanent
    host: str | None
    code: int | None
    enhanced: str | None
    text: str
    possible_duplicate: bool
    sha256: str | None  # of the exact bytes sent in this attempt

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "worker": self.worker,
            "outcome": self.outcome,
            "host": self.host,
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "possible_duplicate": self.possible_duplicate,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    brand: str  # the account (reseller) the event belongs to
    sender_brand: str  # the brand the mail goes out in
    sign_brand: str  # whose DKIM key signs (the platform while a reseller's DNS is unverified)
    event: str
    mandatory: bool
    domain: str | None
    recipient: str
    language: str
    status: Status
    reason: str | None
    idempotency_key: str | None
    message_id: str
    mail_from: str
    rcpt_to: str
    data_sha256: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    deadline: datetime
    sent_at: datetime | None
    lease_expires_at: datetime | None
    dkim_domain: str | None
    dkim_selector: str | None
    sent_sha256: str | None
    possible_duplicate: bool
    attempt_log: tuple[AttemptRecord, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "brand": self.brand,
            "sender_brand": self.sender_brand,
            "sign_brand": self.sign_brand,
            "event": self.event,
            "mandatory": self.mandatory,
            "domain": self.domain,
            "recipient": self.recipient,
            "language": self.language,
            "status": str(self.status),
            "reason": self.reason,
            "idempotency_key": self.idempotency_key,
            "message_id": self.message_id,
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "data_sha256": self.data_sha256,
            "attempts": self.attempts,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "deadline": _iso(self.deadline),
            "sent_at": _iso(self.sent_at),
            "lease_expires_at": _iso(self.lease_expires_at),
            "dkim_domain": self.dkim_domain,
            "dkim_selector": self.dkim_selector,
            "sent_sha256": self.sent_sha256,
            "possible_duplicate": self.possible_duplicate,
            "attempt_log": [a.as_dict() for a in self.attempt_log],
        }


@dataclass(frozen=True, slots=True)
class RawMessage:
    """The bytes of a message: as signed and sent (``signed``), or as queued (unsigned)."""

    data: bytes
    signed: bool
    sha256: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A message a worker holds a lease on."""

    id: int
    message_id: str
    brand: str
    sender_brand: str
    sign_brand: str
    event: str
    mandatory: bool
    mail_from: str
    rcpt_to: str
    data: bytes
    attempts: int  # attempts made before this one
    created_at: float
    deadline: float
    suppressed: bool  # the recipient is on the brand's suppression list


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of working on one claimed message, to be recorded."""

    id: int
    status: Status  # sent | deferred | failed | suppressed
    reason: str | None = None
    next_attempt_at: float | None = None
    attempt: AttemptResult | None = None  # None when nothing was sent
    #: exact bytes sent = ``signed_head + claim.data``, or ``signed_full`` when the signer
    #: changed the body (bare newlines normalised)
    signed_head: bytes | None = None
    signed_full: bytes | None = None
    sent_sha256: str | None = None
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    suppress: bool = False  # put the recipient on the brand's suppression list
    rcpt_to: str = ""
    brand: str = ""
    #: when the outcome was known (Unix seconds): for sent mail the relay's 250, which
    #: ``sent_at`` and the accept-to-sent histogram record (default: when recorded)
    at: float | None = None

    @property
    def signed(self) -> bool:
        """This attempt signed the message (so its bytes replace the earlier evidence)."""
        return self.signed_head is not None or self.signed_full is not None


@dataclass(frozen=True, slots=True)
class Suppression:
    brand: str
    email: str
    reason: str
    code: int | None
    enhanced: str | None
    message: int | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "brand": self.brand,
            "email": self.email,
            "reason": self.reason,
            "code": self.code,
            "enhanced": self.enhanced,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One prepared message to store: made by :mod:`notifier.intake` from a composed
    message (the outbox never renders anything itself)."""

    brand: str
    sender_brand: str
    sign_brand: str
    event: str
    mandatory: bool
    domain: str | None
    recipient: str
    language: str
    idempotency_key: str | None
    request_hash: str
    dedupe_key: str | None
    message_id: str
    mail_from: str
    rcpt_to: str
    data: bytes
    data_sha256: str
    held: bool
    hold_reason: str | None
    cancels: tuple[str, ...]


#: upper bounds (seconds) of the accept-to-sent latency histogram: milliseconds when
#: workers are woken by new mail, hours and days for deferred mail
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    4 * 3600,
    24 * 3600,
    96 * 3600,
)
#: the bounds added with wake-ups (below 1 s): counted since then, see
#: ``sql.backfill_latency_buckets``
SUBSECOND_BUCKETS: tuple[float, ...] = tuple(b for b in LATENCY_BUCKETS if b < 1)
#: states a message waits in (counted live); the others are counted as they happen
LIVE: tuple[Status, ...] = (Status.QUEUED, Status.SENDING, Status.DEFERRED, Status.HELD)
_LIVE_LIST = ", ".join(f"'{s}'" for s in LIVE)


def latency_counter(bound: float) -> str:
    """The cumulative counter of messages sent within ``bound`` seconds: how versions
    before per-bucket counting (and the backfills of :mod:`.sql`) count."""
    return f"latency_le:{bound:g}"


def latency_bucket(bound: float) -> str:
    """The counter of messages whose accept-to-sent latency falls in the bucket that
    ends at ``bound`` (above the previous bound): one counter per sent message, where
    cumulative counting updated every bucket from there up — some twenty hot rows per
    brand and event in each outcome's transaction, contended by every worker."""
    return f"latency_in:{bound:g}"


def bucket_for(latency: float) -> float | None:
    """The smallest bound that ``latency`` (seconds) is within; None above the last."""
    for bound in LATENCY_BUCKETS:
        if latency <= bound:
            return bound
    return None


@dataclass(frozen=True, slots=True)
class Metrics:
    """What ``/metrics`` shows, read cheaply: counters kept as things happen (never
    decrease, survive ``purge``) and the messages still waiting, by state."""

    #: ``(brand, event, name) → value``; names: accepted, sent, failed, suppressed,
    #: cancelled, latency_sum and :func:`latency_counter` buckets (cumulative)
    counters: Mapping[tuple[str, str, str], float]
    #: ``(brand, event, status) → messages`` for the :data:`LIVE` states
    live: Mapping[tuple[str, str, str], int]
    #: ``brand → suppressed addresses``
    suppressed: Mapping[str, int]

    def total(self, name: str) -> float:
        return sum(v for (_, _, n), v in self.counters.items() if n == name)

    def latency_buckets(self) -> list[tuple[float, float]]:
        """``(bound, messages sent within it)`` for every bound, cumulative as
        Prometheus wants: the cumulative counters of earlier versions plus the
        per-bucket counts up to the bound."""
        by_name: defaultdict[str, float] = defaultdict(float)
        for (_, _, name), value in self.counters.items():
            by_name[name] += value
        running = 0.0
        out = []
        for bound in LATENCY_BUCKETS:
            running += by_name[latency_bucket(bound)]
            out.append((bound, by_name[latency_counter(bound)] + running))
        return out
