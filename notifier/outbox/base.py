"""The outbox contract: accepted events become stored messages that a worker delivers.

One table holds every message from acceptance to its final state::

    queued ──claim──▶ sending ──250──▶ sent
      ▲                 │ 4xx / timeout / connection error
      │                 ├──────────────▶ deferred (next_attempt_at) ──due──▶ sending …
      │                 │ 5xx, or past its lifetime (4.4.7)
      │                 ├──────────────▶ failed (reason)
      │                 │ non-mandatory mail to a suppressed address
      │                 └──────────────▶ suppressed
    held (brand DNS unverified, policy "hold") ──DNS verified / queue retry──▶ queued
    queued / deferred / held ──domain renewed, deleted or transferred away──▶ cancelled

``accept`` validates, renders and stores in one transaction: a render error reaches the
caller, and a failed commit leaves nothing behind. The Message-ID and Date are fixed at
acceptance, so every attempt (and any duplicate a lost 250 causes) carries the same
Message-ID. Signing happens at send time, in the worker.

Claims are leases: a worker marks messages ``sending`` with its token and an expiry and
extends the expiry while it works; a message whose lease expired (its worker was killed)
is claimed again by anyone. Outcomes are written only while the lease is still held.

Times are stored as Unix epoch seconds (float) on both databases, so one set of SQL
statements serves SQLite and PostgreSQL; records expose aware ``datetime`` values.
The backends (``sqlite.py``, ``postgres.py``) supply connections, the schema types,
the claim statement and the translation of driver errors into :class:`StorageError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..delivery.transport import AttemptResult
from ..errors import (
    Conflict,
    FieldError,
    NotifierError,
    RenderError,
    StorageError,
    ValidationError,
)
from ..fields import domain_to_ascii

if TYPE_CHECKING:
    from ..brands import Brand
    from ..compose.pipeline import Composed, Pipeline
    from ..compose.render import Event
    from ..intake.preparer import Preparer

log = logging.getLogger("notifier.outbox")

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


#: states a worker may claim once ``next_attempt_at`` has passed
DUE: tuple[Status, ...] = (Status.QUEUED, Status.DEFERRED)
#: states that never change again on their own (purged after the retention period)
FINAL: tuple[Status, ...] = (Status.SENT, Status.CANCELLED, Status.FAILED, Status.SUPPRESSED)
#: states a cancelling event (``domain.renewed`` …) moves to ``cancelled``
CANCELLABLE: tuple[Status, ...] = (Status.QUEUED, Status.DEFERRED, Status.HELD)
#: states ``queue retry`` moves back to ``queued``
RETRYABLE: tuple[Status, ...] = (Status.FAILED, Status.DEFERRED, Status.HELD)


class MessageNotFound(NotifierError):
    """No message with that id (HTTP 404)."""


class InvalidState(Conflict):
    """The message is in a state that does not allow the operation (HTTP 409)."""


# --- configuration -------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w|y)?\s*$")
_UNITS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": MINUTE,
    "min": MINUTE,
    "h": HOUR,
    "d": DAY,
    "w": 7 * DAY,
    "y": 365 * DAY,
}


def parse_duration(text: str, what: str = "duration") -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"2h"``, ``"4d"``, ``"2y"`` → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise NotifierError(f"{what}: {text!r} is not a duration (e.g. 90s, 5m, 2h, 4d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _processes(text: str, what: str) -> int:
    if text.strip().lower() == "auto":
        from ..intake.preparer import auto_processes

        return auto_processes()
    if not text.strip().isdigit():
        raise NotifierError(f"{what}: a number of processes, or auto")
    return int(text)


def _durations(text: str, what: str) -> tuple[float, ...]:
    return tuple(parse_duration(part, what) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class OutboxConfig:
    """Retry schedule, lifetimes, lease and retention. Every value can be set from the
    environment (:meth:`from_env`)."""

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutboxConfig:
        """``NOTIFIER_RETRY_DELAYS=5m,10m,20m,40m``, ``NOTIFIER_RETRY_INTERVAL=1h,2h``,
        ``NOTIFIER_RETRY_JITTER=0.1``, ``NOTIFIER_MAX_LIFETIME=4d``,
        ``NOTIFIER_EVENT_LIFETIMES=transfer.auth_code=1d,…``, ``NOTIFIER_LEASE=15m``,
        ``NOTIFIER_RETENTION=730d``, ``NOTIFIER_DB_BUSY_TIMEOUT=5s``,
        ``NOTIFIER_MAX_BATCH=1000``, ``NOTIFIER_INTAKE_PROCESSES=2`` (or ``auto``: one per
        core)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if text := env.get("NOTIFIER_RETRY_DELAYS"):
            values["retry_delays"] = _durations(text, "NOTIFIER_RETRY_DELAYS")
        if text := env.get("NOTIFIER_RETRY_INTERVAL"):
            parts = _durations(text.replace("-", ","), "NOTIFIER_RETRY_INTERVAL")
            if len(parts) not in (1, 2):
                raise NotifierError("NOTIFIER_RETRY_INTERVAL: one duration or low,high")
            values["retry_interval"] = (parts[0], parts[-1])
        if text := env.get("NOTIFIER_RETRY_JITTER"):
            try:
                values["retry_jitter"] = float(text)
            except ValueError as exc:
                raise NotifierError("NOTIFIER_RETRY_JITTER: must be a number") from exc
        if text := env.get("NOTIFIER_MAX_LIFETIME"):
            values["max_lifetime"] = parse_duration(text, "NOTIFIER_MAX_LIFETIME")
        if text := env.get("NOTIFIER_EVENT_LIFETIMES"):
            lifetimes: dict[str, float] = {}
            for part in text.split(","):
                name, eq, value = part.partition("=")
                if not eq:
                    raise NotifierError("NOTIFIER_EVENT_LIFETIMES: use event=duration,…")
                lifetimes[name.strip()] = parse_duration(value, "NOTIFIER_EVENT_LIFETIMES")
            values["lifetimes"] = lifetimes
        for key, name in (
            ("NOTIFIER_LEASE", "lease"),
            ("NOTIFIER_RETENTION", "retention"),
            ("NOTIFIER_DB_BUSY_TIMEOUT", "busy_timeout"),
            ("NOTIFIER_EXPIRY_GRACE", "expiry_grace"),
        ):
            if text := env.get(key):
                values[name] = parse_duration(text, key)
        if text := env.get("NOTIFIER_MAX_BATCH"):
            if not text.isdigit():
                raise NotifierError("NOTIFIER_MAX_BATCH: must be an integer")
            values["max_batch"] = int(text)
        if text := env.get("NOTIFIER_INTAKE_PROCESSES"):
            values["intake_processes"] = _processes(text, "NOTIFIER_INTAKE_PROCESSES")
        return cls(**values)

    # --- the retry schedule ---------------------------------------------------------

    def lifetime(self, event: str) -> float:
        return self.lifetimes.get(event, self.max_lifetime)

    def retry_delay(
        self, failures: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based).

        +5, 10, 20, 40 minutes, then every 1–2 hours, each ±10 %; a server's "try again
        in N seconds" is honoured by never waiting less than that.
        """
        if failures <= len(self.retry_delays):
            base = self.retry_delays[max(failures, 1) - 1]
        else:
            base = rng.uniform(*self.retry_interval)
        delay = base * rng.uniform(1 - self.retry_jitter, 1 + self.retry_jitter)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.retry_interval[1] * 2)
        return delay


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
class Decision:
    status: Status
    reason: str | None = None
    next_attempt_at: float | None = None
    suppress: bool = False


def describe(result: AttemptResult) -> str:
    """``"550 5.1.1 no such user (mx.example.fi)"``."""
    text = result.text.strip()
    enhanced = result.enhanced or ""
    if enhanced and text.startswith(enhanced):
        enhanced = ""  # the server's text already starts with it
    parts = [str(result.code) if result.code is not None else "", enhanced, text]
    text = " ".join(p for p in parts if p) or result.outcome
    return f"{text} ({result.host})" if result.host else text


def decide(
    config: OutboxConfig, claim: Claim, result: AttemptResult, now: float, rng: random.Random
) -> Decision:
    """The state an attempt leads to: sent; failed at once on 5xx (suppressing the
    address on 5.1.x); otherwise deferred on the retry schedule, or failed with 4.4.7
    once the message is past its lifetime."""
    if result.outcome == "sent":
        return Decision(Status.SENT)
    reason = describe(result)
    if result.outcome == "permanent":
        return Decision(Status.FAILED, reason, suppress=result.no_such_user)
    failures = claim.attempts + 1
    if now >= claim.deadline:
        age = (now - claim.created_at) / HOUR
        return Decision(
            Status.FAILED,
            f"4.4.7 message expired after {failures} attempts in {age:.1f} h; last: {reason}",
        )
    delay = config.retry_delay(failures, rng, result.retry_after)
    return Decision(Status.DEFERRED, reason, min(now + delay, claim.deadline))


def expired(claim: Claim, now: float) -> Decision:
    age = (now - claim.created_at) / HOUR
    return Decision(
        Status.FAILED, f"4.4.7 message expired after {claim.attempts} attempts in {age:.1f} h"
    )


# --- canonical values for hashes and natural keys --------------------------------------


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _canon(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: checked first, the hash is on every accept
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, BaseModel):
        return {k: _canon(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def _digest(value: Any) -> str:
    text = json.dumps(_canon(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_hash(event: Event) -> str:
    """What "the same request" means for an idempotency key: the same event, brand,
    recipient and data (values compared, not spelling: ``"12.5"`` equals ``12.50``)."""
    r = event.recipient
    return _digest(
        {
            "event": event.name,
            "brand": event.brand_id,
            "recipient": {"email": r.email.lower(), "name": r.name, "language": r.language},
            "data": event.data,
        }
    )


def event_domain(event: Event) -> str | None:
    value = getattr(event.data, "domain", None)
    if not isinstance(value, str):
        return None
    try:
        return domain_to_ascii(value)
    except ValueError:
        return value.lower()


def natural_key(event: Event, domain: str | None) -> str | None:
    """brand + event + domain + the spec's occasion fields; ``None`` when the event has
    no occasion (every such event is a new message)."""
    if not event.spec.occasion:
        return None
    occasion = [getattr(event.data, name, None) for name in event.spec.occasion]
    return _digest([event.brand_id, event.name, domain, occasion])


_DKIM_TAGS = re.compile(rb"(?:^|;)\s*([ds])\s*=\s*([^;\s]+)")


def dkim_identity(head: bytes) -> tuple[str | None, str | None]:
    """``d=`` and ``s=`` of the DKIM-Signature headers in ``head`` (comma-joined when a
    message carries several signatures, e.g. RSA and Ed25519)."""
    domains: list[str] = []
    selectors: list[str] = []
    for block in re.split(rb"(?im)^dkim-signature:", head)[1:]:
        unfolded = re.sub(rb"\r\n[ \t]+", b" ", block.split(b"\r\n\r\n")[0])
        line = unfolded.split(b"\r\n")[0]
        for tag, value in _DKIM_TAGS.findall(line):
            target = domains if tag == b"d" else selectors
            text = value.decode("ascii", "replace")
            if text not in target:
                target.append(text)
    return (",".join(domains) or None, ",".join(selectors) or None)


@dataclass(frozen=True, slots=True)
class Planned:
    """A rendered message and who signs it (see :func:`plan`)."""

    composed: Composed
    signer: Brand  # whose DKIM key signs: the sending brand, or the platform on its behalf
    mail_from: str  # envelope sender, on the signer's bounce domain
    held: bool  # brand DNS unverified under policy "hold": keep until verified
    reason: str


def plan(pipeline: Pipeline, event: Event) -> Planned:
    """Render ``event`` the way it will be sent, applying the unverified-DNS policy.

    A brand whose DNS is verified (or the platform) sends as itself. Otherwise, under
    ``unverified_policy = "platform"`` — and always for mandatory notices — the mail
    goes out from the platform's domain, signed with its key, with the reseller's
    display name; under ``"hold"`` it is composed as the brand's own and held.
    The Message-ID is made here, once, on the signer's domain.
    """
    from ..compose import mime
    from ..signing.dkim import choose_signing

    brands = pipeline.brands
    account = brands.get(event.brand_id)
    sender = pipeline.renderer.sending_brand(event.spec, event.data, account)
    decision = choose_signing(sender, brands.platform, mandatory=event.spec.mandatory)
    signer = decision.signer or sender
    via_platform = decision.via_platform
    composed = pipeline.compose(
        event,
        message_id=mime.new_message_id(signer),
        from_domain=decision.from_domain if via_platform else None,
    )
    out = composed.outgoing
    if not out.data:
        raise RenderError(f"{event.name}: rendered an empty message")
    mail_from = out.mail_from
    if via_platform and decision.envelope_domain:
        mail_from = f"{mail_from.rpartition('@')[0]}@{decision.envelope_domain}"
    return Planned(composed, signer, mail_from, decision.hold, decision.reason)


def prepare(pipeline: Pipeline, config: OutboxConfig, event: Event) -> _Prepared:
    """A validated event → the row to insert (rendered, composed, planned)."""
    planned = plan(pipeline, event)
    out = planned.composed.outgoing
    domain = event_domain(event)
    key = event.idempotency_key
    return _Prepared(
        brand=event.brand_id,
        sender_brand=planned.composed.brand.id,
        sign_brand=planned.signer.id,
        event=event.name,
        mandatory=event.spec.mandatory,
        domain=domain,
        recipient=out.rcpt_to.lower(),
        language=planned.composed.rendered.language,
        idempotency_key=key,
        request_hash=request_hash(event),
        dedupe_key=None if key else natural_key(event, domain),
        message_id=out.message_id,
        mail_from=planned.mail_from,
        rcpt_to=out.rcpt_to,
        data=out.data,
        data_sha256=out.sha256,
        held=planned.held,
        hold_reason=planned.reason if planned.held else None,
        lifetime=config.lifetime(event.name),
        cancels=tuple(event.spec.cancels),
    )


def prepare_raw(
    pipeline: Pipeline, config: OutboxConfig, raw: Any, loc: str
) -> _Prepared | NotifierError:
    """Validate and :func:`prepare` one raw event; its error is returned, not raised
    (a render error carries a note naming ``loc``)."""
    try:
        event = pipeline.validate(raw, loc)
    except ValidationError as exc:
        return exc
    try:
        return prepare(pipeline, config, event)
    except NotifierError as exc:
        if loc:
            exc.add_note(f"while rendering {loc}")
        return exc


# --- the contract ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One validated and rendered event, ready to insert."""

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
    lifetime: float
    cancels: tuple[str, ...]


_MESSAGE_COLUMNS = (
    "id, brand, sender_brand, sign_brand, event, mandatory, domain, recipient, language, "
    "status, reason, idempotency_key, message_id, mail_from, rcpt_to, data_sha256, attempts, "
    "created_at, updated_at, next_attempt_at, deadline, sent_at, lease_expires_at, "
    "dkim_domain, dkim_selector, sent_sha256, possible_duplicate"
)
#: what a claim returns, qualified for UPDATE … RETURNING on both backends: the body
#: lives in its own table (written once, never updated, so state changes rewrite a
#: small row) and the suppression check rides along
_CLAIM_COLUMNS = ", ".join(
    [
        f"outbox_messages.{c}"
        for c in (
            "id",
            "message_id",
            "brand",
            "sender_brand",
            "sign_brand",
            "event",
            "mandatory",
            "mail_from",
            "rcpt_to",
        )
    ]
    + ["(SELECT b.data FROM outbox_bodies b WHERE b.message = outbox_messages.id)"]
    + [f"outbox_messages.{c}" for c in ("attempts", "created_at", "deadline")]
    + [
        "EXISTS (SELECT 1 FROM outbox_suppressions s WHERE s.brand = outbox_messages.brand "
        "AND s.email = outbox_messages.recipient)"
    ]
)
_DUE_LIST = ", ".join(f"'{s}'" for s in DUE)
_FINAL_LIST = ", ".join(f"'{s}'" for s in FINAL)
_CANCELLABLE_LIST = ", ".join(f"'{s}'" for s in CANCELLABLE)
_RETRYABLE_LIST = ", ".join(f"'{s}'" for s in RETRYABLE)

#: upper bounds (seconds) of the accept-to-sent latency histogram
LATENCY_BUCKETS: tuple[float, ...] = (
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
#: states a message waits in (counted live); the others are counted as they happen
LIVE: tuple[Status, ...] = (Status.QUEUED, Status.SENDING, Status.DEFERRED, Status.HELD)
_LIVE_LIST = ", ".join(f"'{s}'" for s in LIVE)
_STATES = tuple(str(s) for s in Status)
_INSERT_MESSAGES = (
    "INSERT INTO outbox_messages (brand, sender_brand, sign_brand, event, mandatory, "
    "domain, recipient, language, idempotency_key, request_hash, dedupe_key, "
    "message_id, mail_from, rcpt_to, data_sha256, status, reason, created_at, "
    "updated_at, next_attempt_at, deadline) VALUES "
)
_ROW_MARKS = "(" + ", ".join(["?"] * 21) + ")"
#: rows per INSERT: 21 parameters each stays far below either database's limit
_INSERT_CHUNK = 250


def latency_counter(bound: float) -> str:
    return f"latency_le:{bound:g}"


def _backfill_counters() -> list[str]:
    """Statements that fill ``outbox_counters`` once from the rows already stored (a
    database from before the counters existed); no-ops once the meta key is set."""
    once = "NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters')"
    insert = "INSERT INTO outbox_counters (brand, event, name, value) "
    sent = "status = 'sent' AND sent_at IS NOT NULL"
    statements = [
        f"{insert}SELECT brand, event, 'accepted', COUNT(*) FROM outbox_messages "
        f"WHERE {once} GROUP BY brand, event",
        f"{insert}SELECT brand, event, status, COUNT(*) FROM outbox_messages "
        f"WHERE status IN ('sent', 'failed', 'suppressed', 'cancelled') AND {once} "
        "GROUP BY brand, event, status",
        f"{insert}SELECT brand, event, 'latency_sum', SUM(sent_at - created_at) "
        f"FROM outbox_messages WHERE {sent} AND {once} GROUP BY brand, event",
    ]
    statements += [
        f"{insert}SELECT brand, event, '{latency_counter(b)}', COUNT(*) FROM outbox_messages "
        f"WHERE {sent} AND sent_at - created_at <= {float(b)!r} AND {once} "
        "GROUP BY brand, event"
        for b in LATENCY_BUCKETS
    ]
    statements.append(
        "INSERT INTO outbox_meta (key, value) VALUES ('counters', '1') ON CONFLICT (key) DO NOTHING"
    )
    return statements


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


class Cursor:
    """A DB-API cursor taking ``?`` placeholders on every backend."""

    def __init__(self, outbox: Outbox, raw: Any) -> None:
        self._outbox = outbox
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self.raw.execute(self._outbox._sql(sql), tuple(params))
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.raw.fetchone()
        return row

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.raw.fetchall()
        return rows

    @property
    def rowcount(self) -> int:
        count: int = self.raw.rowcount
        return count

    def many_returning(self, sql: str, seq: Sequence[Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
        """Run ``sql`` once per parameter set; the rows each run returned."""
        return self._outbox._many_returning(self.raw, self._outbox._sql(sql), seq)

    def many(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        if seq:
            self.raw.executemany(self._outbox._sql(sql), [tuple(p) for p in seq])


class Outbox(ABC):
    """Durable storage of messages from acceptance to their final state.

    Thread-safe: each thread uses its own connection. ``clock`` returns Unix seconds
    (tests pass a fake one to move time without sleeping).
    """

    #: "sqlite" or "postgres"
    kind: str = ""

    def __init__(
        self,
        pipeline: Pipeline,
        config: OutboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config or OutboxConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        self.preparer = self._preparer()

    def _preparer(self) -> Preparer:
        from ..intake.preparer import InlinePreparer, PoolPreparer

        inline = InlinePreparer(self.pipeline, self.config)
        if self.config.intake_processes < 1:
            return inline
        # the workers build their pipeline from the same settings
        return PoolPreparer(
            self.pipeline.settings, self.config, self.config.intake_processes, inline
        )

    # --- backend hooks --------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new driver connection."""

    @abstractmethod
    def _begin(self, conn: Any, write: bool) -> None: ...

    @abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def _translate(self, exc: Exception) -> StorageError:
        """A driver error → StorageError (the one place driver errors are translated)."""

    @abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def _schema(self, cur: Cursor) -> list[str]:
        """The DDL statements, run in one transaction on ``cur``."""

    @abstractmethod
    def _claim_rows(
        self,
        cur: Cursor,
        worker: str,
        limit: int,
        now: float,
        lease_until: float,
        expired: bool,
    ) -> list[tuple[Any, ...]]:
        """Mark up to ``limit`` due messages (or, with ``expired``, messages whose lease
        ran out) ``sending`` for ``worker``; return ``_CLAIM_COLUMNS``."""

    def _sql(self, sql: str) -> str:
        return sql

    def _many_returning(
        self, raw: Any, sql: str, seq: Sequence[Sequence[Any]]
    ) -> list[list[tuple[Any, ...]]]:
        out = []
        for params in seq:
            raw.execute(sql, tuple(params))
            out.append(list(raw.fetchall()))
        return out

    # --- connections and transactions ---------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except Exception as exc:
                if self._is_driver_error(exc):
                    raise self._translate(exc) from exc
                raise
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._all_lock:
                if conn in self._all:
                    self._all.remove(conn)
            try:
                conn.close()
            except Exception:
                log.debug("closing a broken connection failed", exc_info=True)

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back on any error.
        Driver errors leave as :class:`StorageError` (``raise … from``)."""
        conn = self._conn()
        try:
            self._begin(conn, write)
            cur = Cursor(self, conn.cursor())
            yield cur
            self._commit(conn)
        except BaseException as exc:
            try:
                self._rollback(conn)
            except Exception:
                log.warning("rollback failed; dropping the connection", exc_info=True)
                self._drop_conn()
            if isinstance(exc, Exception) and self._is_driver_error(exc):
                if self._broken(conn):
                    self._drop_conn()
                raise self._translate(exc) from exc
            raise

    def _broken(self, conn: Any) -> bool:
        return False

    def close(self) -> None:
        self.preparer.close()
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                log.debug("close failed", exc_info=True)
        self._local = threading.local()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def init_schema(self) -> None:
        with self.transaction() as cur:
            for statement in self._schema(cur):
                cur.execute(statement)

    # --- intake ------------------------------------------------------------------------

    def accept(self, raw: Any) -> Accepted:
        """Validate, render and store one event; return its id (or the existing one)."""
        return self._accepted(self._accept([raw], [""]))[0]

    def accept_batch(self, raws: Any, prefix: str = "events") -> list[Accepted]:
        """Accept several events atomically: any invalid event (errors name
        ``events[3].data.expires_at``), render error or idempotency conflict rejects the
        whole batch and stores nothing."""
        return self._accepted(self._accept(*self._items(raws, prefix)))

    def accept_each(self, raws: Any, prefix: str = "events") -> list[Accepted | NotifierError]:
        """Accept several events, each on its own merits: the valid ones are stored in one
        transaction; an invalid item, a render error or an idempotency conflict is that
        item's result (errors name ``events[3].data.expires_at``) and stores nothing of
        it. A storage failure raises and stores nothing at all."""
        return self._accept(*self._items(raws, prefix), atomic=False)

    def _items(self, raws: Any, prefix: str) -> tuple[list[Any], list[str]]:
        if not isinstance(raws, Sequence) or isinstance(raws, str | bytes):
            raise ValidationError([FieldError(prefix or "body", "must be a list of events")])
        if len(raws) > self.config.max_batch:
            raise ValidationError(
                [FieldError(prefix or "body", f"at most {self.config.max_batch} events per batch")]
            )
        return list(raws), [f"{prefix}[{i}]" for i in range(len(raws))]

    @staticmethod
    def _accepted(results: list[Accepted | NotifierError]) -> list[Accepted]:
        # atomic: any error was raised before anything was stored
        return [r for r in results if isinstance(r, Accepted)]

    def _accept(
        self, raws: list[Any], locs: list[str], atomic: bool = True
    ) -> list[Accepted | NotifierError]:
        outcomes = self.preparer.prepare(raws, locs)
        if atomic:
            invalid = [e for o in outcomes if isinstance(o, ValidationError) for e in o.errors]
            if invalid:
                raise ValidationError(invalid)
            for outcome in outcomes:
                if isinstance(outcome, NotifierError):
                    raise outcome
        ready = [o for o in outcomes if isinstance(o, _Prepared)]
        stored: Iterator[Accepted | NotifierError] = iter(())
        if ready:
            with self.transaction() as cur:
                stored = iter(self._store(cur, ready, atomic))
        return [next(stored) if isinstance(o, _Prepared) else o for o in outcomes]

    def _suppressed_set(
        self, cur: Cursor, pairs: Iterable[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        by_brand: dict[str, set[str]] = {}
        for brand, email in pairs:
            by_brand.setdefault(brand, set()).add(email)
        found: set[tuple[str, str]] = set()
        for brand, emails in by_brand.items():
            ordered = sorted(emails)
            for i in range(0, len(ordered), 400):
                chunk = ordered[i : i + 400]
                marks = ", ".join("?" for _ in chunk)
                rows = cur.execute(
                    f"SELECT email FROM outbox_suppressions WHERE brand = ? AND email IN ({marks})",
                    [brand, *chunk],
                ).fetchall()
                found.update((brand, row[0]) for row in rows)
        return found

    def _store(
        self, cur: Cursor, items: list[_Prepared], atomic: bool = True
    ) -> list[Accepted | NotifierError]:
        """Insert ``items``; an item already stored (idempotency key, natural key) returns
        the existing message. A key reused for another request raises :class:`Conflict`
        (``atomic``: the transaction rolls back) or is that item's result (nothing of it
        was inserted: ``ON CONFLICT DO NOTHING``)."""
        now = self.clock()
        suppressed = self._suppressed_set(
            cur, ((p.brand, p.recipient) for p in items if not p.mandatory)
        )
        rows: list[tuple[Any, ...]] = []
        statuses: list[Status] = []
        for p in items:
            status: Status = Status.QUEUED
            reason: str | None = None
            due: float | None = now
            if (p.brand, p.recipient) in suppressed and not p.mandatory:
                status, reason, due = (
                    Status.SUPPRESSED,
                    "recipient is on the brand's suppression list",
                    None,
                )
            elif p.held:
                status, reason, due = Status.HELD, p.hold_reason, None
            statuses.append(status)
            rows.append(
                (
                    p.brand,
                    p.sender_brand,
                    p.sign_brand,
                    p.event,
                    p.mandatory,
                    p.domain,
                    p.recipient,
                    p.language,
                    p.idempotency_key,
                    p.request_hash,
                    p.dedupe_key,
                    p.message_id,
                    p.mail_from,
                    p.rcpt_to,
                    p.data_sha256,
                    str(status),
                    reason,
                    now,
                    now,
                    due,
                    now + p.lifetime,
                )
            )
        inserted = self._insert_messages(cur, rows)
        results: list[Accepted | NotifierError] = []
        bodies: list[tuple[int, bytes]] = []
        counts: Counter[tuple[str, str, str]] = Counter()
        for p, status in zip(items, statuses, strict=True):
            new_id = inserted.get(p.message_id)
            if new_id is None:
                try:
                    results.append(self._existing(cur, p))
                except StorageError as exc:
                    if atomic:
                        raise
                    results.append(exc)
                continue
            bodies.append((new_id, p.data))
            counts[(p.brand, p.event, "accepted")] += 1
            if status == Status.SUPPRESSED:
                counts[(p.brand, p.event, "suppressed")] += 1
            if p.cancels and p.domain:
                for key in self._cancel(cur, p, new_id, now):
                    counts[key] += 1
            results.append(Accepted(new_id, status, p.language, False, p.message_id))
        cur.many("INSERT INTO outbox_bodies (message, data) VALUES (?, ?)", bodies)
        self._count(cur, counts)
        return results

    def _insert_messages(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Insert message rows, many per statement (a round of SQL per row costs more than
        the row); a row whose idempotency or natural key exists is skipped. Returns
        Message-ID → id of the rows inserted, ids in ``rows`` order."""
        inserted: dict[str, int] = {}
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            sql = (
                _INSERT_MESSAGES
                + ", ".join([_ROW_MARKS] * len(chunk))
                + (" ON CONFLICT DO NOTHING RETURNING id, message_id")
            )
            params = [value for row in chunk for value in row]
            for new_id, message_id in cur.execute(sql, params).fetchall():
                inserted[str(message_id)] = int(new_id)
        return inserted

    def _existing(self, cur: Cursor, p: _Prepared) -> Accepted:
        if p.idempotency_key is not None:
            row = cur.execute(
                "SELECT id, request_hash, status, language, message_id FROM outbox_messages "
                "WHERE brand = ? AND idempotency_key = ?",
                [p.brand, p.idempotency_key],
            ).fetchone()
            if row is not None and row[1] != p.request_hash:
                raise Conflict(
                    f"idempotency key {p.idempotency_key!r} of brand {p.brand!r} was used for "
                    f"a different request (message {row[0]}); nothing was enqueued"
                )
        elif p.dedupe_key is not None:
            row = cur.execute(
                "SELECT id, request_hash, status, language, message_id FROM outbox_messages "
                "WHERE dedupe_key = ?",
                [p.dedupe_key],
            ).fetchone()
        else:
            row = None
        if row is None:
            raise StorageError("message could not be stored (unique constraint), try again")
        return Accepted(int(row[0]), Status(row[2]), row[3], True, row[4])

    def _cancel(
        self, cur: Cursor, p: _Prepared, new_id: int, now: float
    ) -> list[tuple[str, str, str]]:
        marks = ", ".join("?" for _ in p.cancels)
        rows = cur.execute(
            "UPDATE outbox_messages SET status = 'cancelled', reason = ?, updated_at = ?, "
            "next_attempt_at = NULL "
            f"WHERE brand = ? AND domain = ? AND event IN ({marks}) "
            f"AND status IN ({_CANCELLABLE_LIST}) AND id < ? RETURNING brand, event",
            [
                f"cancelled by {p.event} (message {new_id})",
                now,
                p.brand,
                p.domain,
                *p.cancels,
                new_id,
            ],
        ).fetchall()
        if rows:
            log.info(
                "message %s (%s %s) cancelled %s pending message(s)",
                new_id,
                p.event,
                p.domain,
                len(rows),
            )
        return [(str(brand), str(event), "cancelled") for brand, event in rows]

    def _count(self, cur: Cursor, counts: Mapping[tuple[str, str, str], float]) -> None:
        """Add to the counters. Last in every transaction that calls it, after all its
        message rows are locked, and in key order: on PostgreSQL, two transactions then
        never wait on each other in a cycle."""
        if counts:
            cur.many(
                "INSERT INTO outbox_counters (brand, event, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (brand, event, name) "
                "DO UPDATE SET value = outbox_counters.value + excluded.value",
                [(*key, value) for key, value in sorted(counts.items()) if value],
            )

    # --- worker side -----------------------------------------------------------------

    def claim(self, worker: str, limit: int, lease: float | None = None) -> list[Claim]:
        """Lease up to ``limit`` due messages to ``worker``: expired leases first (their
        worker died; the attempt is recorded as interrupted), then the oldest due."""
        now = self.clock()
        until = now + (lease if lease is not None else self.config.lease)
        with self.transaction() as cur:
            rows = self._claim_rows(cur, worker, limit, now, until, expired=True)
            if rows:
                cur.many(
                    "INSERT INTO outbox_attempts (message, at, worker, outcome, text, "
                    "possible_duplicate) VALUES (?, ?, ?, 'transient', ?, ?)",
                    [
                        (
                            r[0],
                            now,
                            worker,
                            "interrupted: the worker holding the lease stopped; the message may "
                            "have been delivered and is sent again with the same Message-ID",
                            True,
                        )
                        for r in rows
                    ],
                )
                cur.many(
                    "UPDATE outbox_messages SET attempts = attempts + 1 WHERE id = ?",
                    [(r[0],) for r in rows],
                )
                rows = [(*r[:10], int(r[10]) + 1, *r[11:]) for r in rows]
                log.warning("reclaimed %d message(s) whose lease expired", len(rows))
            if len(rows) < limit:
                rows += self._claim_rows(cur, worker, limit - len(rows), now, until, False)
        return [
            Claim(
                id=int(r[0]),
                message_id=r[1],
                brand=r[2],
                sender_brand=r[3],
                sign_brand=r[4],
                event=r[5],
                mandatory=bool(r[6]),
                mail_from=r[7],
                rcpt_to=r[8],
                data=bytes(r[9]),
                attempts=int(r[10]),
                created_at=float(r[11]),
                deadline=float(r[12]),
                suppressed=bool(r[13]),
            )
            for r in rows
        ]

    def heartbeat(self, worker: str, lease: float | None = None) -> int:
        """Extend the lease of every message ``worker`` holds; returns how many."""
        now = self.clock()
        until = now + (lease if lease is not None else self.config.lease)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE outbox_messages SET lease_expires_at = ? "
                "WHERE lease_token = ? AND status = 'sending'",
                [until, worker],
            )
            return cur.rowcount

    def complete(self, worker: str, deliveries: Sequence[Delivery]) -> list[int]:
        """Record outcomes in one transaction. A message whose lease ``worker`` no longer
        holds keeps its state (another worker owns it); its attempt is still recorded.
        Returns the ids whose lease was lost."""
        if not deliveries:
            return []
        now = self.clock()
        with self.transaction() as cur:
            updated = cur.many_returning(
                "UPDATE outbox_messages SET status = ?, reason = ?, next_attempt_at = ?, "
                "attempts = attempts + ?, sent_at = ?, updated_at = ?, lease_token = NULL, "
                "lease_expires_at = NULL, "
                "dkim_domain = CASE WHEN ? THEN ? ELSE dkim_domain END, "
                "dkim_selector = CASE WHEN ? THEN ? ELSE dkim_selector END, "
                "sent_sha256 = CASE WHEN ? THEN ? ELSE sent_sha256 END, "
                "possible_duplicate = (possible_duplicate OR ?) "
                "WHERE id = ? AND lease_token = ? AND status = 'sending' "
                "RETURNING id, brand, event, created_at",
                [
                    (
                        str(d.status),
                        d.reason,
                        d.next_attempt_at,
                        1 if d.attempt is not None else 0,
                        now if d.status == Status.SENT else None,
                        now,
                        d.signed,
                        d.dkim_domain,
                        d.signed,
                        d.dkim_selector,
                        d.signed,
                        d.sent_sha256,
                        bool(d.attempt and d.attempt.possible_duplicate),
                        d.id,
                        worker,
                    )
                    for d in deliveries
                ],
            )
            lost = [d.id for d, rows in zip(deliveries, updated, strict=True) if not rows]
            counts: dict[tuple[str, str, str], float] = defaultdict(float)
            for d, rows in zip(deliveries, updated, strict=True):
                if not rows or d.status not in FINAL:
                    continue
                _, brand, event, created_at = rows[0]
                counts[(brand, event, str(d.status))] += 1
                if d.status == Status.SENT:
                    latency = max(0.0, now - float(created_at))
                    counts[(brand, event, "latency_sum")] += latency
                    for bound in LATENCY_BUCKETS:
                        if latency <= bound:
                            counts[(brand, event, latency_counter(bound))] += 1
            cur.many(
                "INSERT INTO outbox_attempts (message, at, worker, outcome, host, code, "
                "enhanced, text, possible_duplicate, sha256, signed_head, signed_full) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.id,
                        d.attempt.at.timestamp(),
                        worker,
                        d.attempt.outcome,
                        d.attempt.host,
                        d.attempt.code,
                        d.attempt.enhanced,
                        d.attempt.text[:2000],
                        d.attempt.possible_duplicate,
                        d.sent_sha256,
                        d.signed_head,
                        d.signed_full,
                    )
                    for d in deliveries
                    if d.attempt is not None
                ],
            )
            self._add_suppressions(
                cur,
                [
                    (
                        d.brand,
                        d.rcpt_to.lower(),
                        d.reason or "no such user",
                        d.attempt.code if d.attempt else None,
                        d.attempt.enhanced if d.attempt else None,
                        d.id,
                        now,
                    )
                    for d in deliveries
                    if d.suppress and d.rcpt_to
                ],
            )
            self._count(cur, counts)
        if lost:
            log.warning("worker %s lost the lease of %d message(s): %s", worker, len(lost), lost)
        return lost

    def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Give back messages ``worker`` holds but did not attempt (SIGTERM)."""
        now = self.clock()
        sql = (
            "UPDATE outbox_messages SET status = CASE WHEN attempts = 0 THEN 'queued' "
            "ELSE 'deferred' END, lease_token = NULL, lease_expires_at = NULL, updated_at = ? "
            "WHERE lease_token = ? AND status = 'sending'"
        )
        with self.transaction() as cur:
            if ids is None:
                cur.execute(sql, [now, worker])
                return cur.rowcount
            if not ids:
                return 0
            total = 0
            for i in range(0, len(ids), 400):
                chunk = list(ids[i : i + 400])
                marks = ", ".join("?" for _ in chunk)
                cur.execute(f"{sql} AND id IN ({marks})", [now, worker, *chunk])
                total += cur.rowcount
            return total

    def release_held(self, brand_ids: Iterable[str]) -> int:
        """Queue the held messages of brands whose DNS is now verified. Their lifetime
        starts again: holding was the brand's choice, not a delivery failure."""
        brand_ids = sorted(set(brand_ids))
        if not brand_ids:
            return 0
        now = self.clock()
        marks = ", ".join("?" for _ in brand_ids)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', reason = NULL, "
                "next_attempt_at = ?, deadline = ? + (deadline - created_at), updated_at = ? "
                f"WHERE status = 'held' AND sender_brand IN ({marks})",
                [now, now, now, *brand_ids],
            )
            return cur.rowcount

    # --- suppression list ------------------------------------------------------------

    def _add_suppressions(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            cur.many(
                "INSERT INTO outbox_suppressions (brand, email, reason, code, enhanced, "
                "message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    def suppress(
        self,
        brand: str,
        email: str,
        reason: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        message: int | None = None,
    ) -> None:
        with self.transaction() as cur:
            self._add_suppressions(
                cur, [(brand, email.lower(), reason, code, enhanced, message, self.clock())]
            )

    def unsuppress(self, brand: str, email: str) -> bool:
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM outbox_suppressions WHERE brand = ? AND email = ?",
                [brand, email.lower()],
            )
            return cur.rowcount > 0

    def is_suppressed(self, brand: str, email: str) -> bool:
        with self.transaction(write=False) as cur:
            row = cur.execute(
                "SELECT 1 FROM outbox_suppressions WHERE brand = ? AND email = ?",
                [brand, email.lower()],
            ).fetchone()
            return row is not None

    def suppressions(self, brand: str | None = None) -> list[Suppression]:
        sql = (
            "SELECT brand, email, reason, code, enhanced, message, created_at "
            "FROM outbox_suppressions"
        )
        params: list[Any] = []
        if brand is not None:
            sql += " WHERE brand = ?"
            params.append(brand)
        with self.transaction(write=False) as cur:
            rows = cur.execute(sql + " ORDER BY brand, email", params).fetchall()
        return [
            Suppression(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromtimestamp(r[6], UTC))
            for r in rows
        ]

    # --- reading -----------------------------------------------------------------------

    def get(self, message: int) -> MessageRecord:
        with self.transaction(write=False) as cur:
            row = cur.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM outbox_messages WHERE id = ?", [message]
            ).fetchone()
            if row is None:
                raise MessageNotFound(f"no message {message}")
            attempts = cur.execute(
                "SELECT at, worker, outcome, host, code, enhanced, text, possible_duplicate, "
                "sha256 FROM outbox_attempts WHERE message = ? ORDER BY id",
                [message],
            ).fetchall()
        log_ = tuple(
            AttemptRecord(
                at=datetime.fromtimestamp(a[0], UTC),
                worker=a[1],
                outcome=a[2],
                host=a[3],
                code=a[4],
                enhanced=a[5],
                text=a[6] or "",
                possible_duplicate=bool(a[7]),
                sha256=a[8],
            )
            for a in attempts
        )
        return MessageRecord(
            id=int(row[0]),
            brand=row[1],
            sender_brand=row[2],
            sign_brand=row[3],
            event=row[4],
            mandatory=bool(row[5]),
            domain=row[6],
            recipient=row[7],
            language=row[8],
            status=Status(row[9]),
            reason=row[10],
            idempotency_key=row[11],
            message_id=row[12],
            mail_from=row[13],
            rcpt_to=row[14],
            data_sha256=row[15],
            attempts=int(row[16]),
            created_at=_dt(row[17]),  # type: ignore[arg-type]
            updated_at=_dt(row[18]),  # type: ignore[arg-type]
            next_attempt_at=_dt(row[19]),
            deadline=_dt(row[20]),  # type: ignore[arg-type]
            sent_at=_dt(row[21]),
            lease_expires_at=_dt(row[22]),
            dkim_domain=row[23],
            dkim_selector=row[24],
            sent_sha256=row[25],
            possible_duplicate=bool(row[26]),
            attempt_log=log_,
        )

    def raw(self, message: int) -> RawMessage:
        """The message as last sent (signed; each attempt keeps its own DKIM header),
        checked against its recorded SHA-256; or, if it was never attempted, the
        unsigned bytes as queued."""
        with self.transaction(write=False) as cur:
            row = cur.execute(
                "SELECT b.data, m.data_sha256, m.sent_sha256 FROM outbox_messages m "
                "JOIN outbox_bodies b ON b.message = m.id WHERE m.id = ?",
                [message],
            ).fetchone()
            if row is None:
                raise MessageNotFound(f"no message {message}")
            data, data_sha, sent_sha = bytes(row[0]), row[1], row[2]
            signed = None
            if sent_sha is not None:
                signed = cur.execute(
                    "SELECT signed_head, signed_full FROM outbox_attempts "
                    "WHERE message = ? AND sha256 = ? ORDER BY id DESC LIMIT 1",
                    [message, sent_sha],
                ).fetchone()
        if signed is None:
            if hashlib.sha256(data).hexdigest() != data_sha:
                raise StorageError(f"message {message}: stored bytes do not match their SHA-256")
            return RawMessage(data, False, data_sha)
        head, full = signed
        blob = bytes(full) if full is not None else bytes(head or b"") + data
        digest = hashlib.sha256(blob).hexdigest()
        if digest != sent_sha:
            raise StorageError(f"message {message}: stored bytes do not match their SHA-256")
        return RawMessage(blob, True, digest)

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        with self.transaction(write=False) as cur:
            counts = dict(
                cur.execute(
                    "SELECT status, COUNT(*) FROM outbox_messages GROUP BY status"
                ).fetchall()
            )
            due, oldest = cur.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox_messages "
                f"WHERE status IN ({_DUE_LIST}) AND next_attempt_at <= ?",
                [now],
            ).fetchone() or (0, None)
            nxt = cur.execute(
                "SELECT MIN(next_attempt_at) FROM outbox_messages WHERE status = 'deferred'"
            ).fetchone()
            expired = cur.execute(
                "SELECT COUNT(*) FROM outbox_messages "
                "WHERE status = 'sending' AND lease_expires_at <= ?",
                [now],
            ).fetchone()
            suppressed = cur.execute("SELECT COUNT(*) FROM outbox_suppressions").fetchone()
        by_status = {str(s): int(counts.get(str(s), 0)) for s in Status}
        return {
            "database": self.kind,
            "total": sum(by_status.values()),
            "by_status": by_status,
            "due": int(due or 0),
            "oldest_due_age_s": round(now - oldest, 1) if oldest is not None else None,
            "next_deferred_at": _iso(_dt(nxt[0] if nxt else None)),
            "expired_leases": int(expired[0] if expired else 0),
            "suppressed_addresses": int(suppressed[0] if suppressed else 0),
        }

    def search(
        self,
        *,
        brand: str | None = None,
        status: Status | str | None = None,
        event: str | None = None,
        recipient: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[MessageRecord]:
        """Messages matching every filter given, newest first; ``before`` an id (the
        cursor of the page before)."""
        if status is not None and status not in _STATES:
            raise ValidationError(
                [FieldError("status", f"unknown state {status!r}; one of {', '.join(_STATES)}")]
            )
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("brand", brand),
            ("status", None if status is None else str(status)),
            ("event", event),
            ("recipient", recipient.lower() if recipient else None),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        sql = "SELECT id FROM outbox_messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.transaction(write=False) as cur:
            ids = [
                int(r[0])
                for r in cur.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
            ]
        records = []
        for i in ids:
            try:
                records.append(self.get(i))
            except MessageNotFound:  # purged meanwhile
                continue
        return records

    def metrics(self) -> Metrics:
        """Counters and waiting messages for monitoring: small reads (the counters table,
        the live states through their index), whatever the size of the history."""
        with self.transaction(write=False) as cur:
            counters = cur.execute(
                "SELECT brand, event, name, value FROM outbox_counters"
            ).fetchall()
            live = cur.execute(
                "SELECT brand, event, status, COUNT(*) FROM outbox_messages "
                f"WHERE status IN ({_LIVE_LIST}) GROUP BY brand, event, status"
            ).fetchall()
            suppressed = cur.execute(
                "SELECT brand, COUNT(*) FROM outbox_suppressions GROUP BY brand"
            ).fetchall()
        return Metrics(
            counters={(str(b), str(e), str(n)): float(v) for b, e, n, v in counters},
            live={(str(b), str(e), str(s)): int(n) for b, e, s, n in live},
            suppressed={str(b): int(n) for b, n in suppressed},
        )

    # --- operations --------------------------------------------------------------------

    def retry(self, message: int) -> MessageRecord:
        """Queue a failed, deferred or held message for an attempt now, with a fresh
        lifetime."""
        now = self.clock()
        with self.transaction() as cur:
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', reason = NULL, "
                "next_attempt_at = ?, deadline = ? + (deadline - created_at), updated_at = ? "
                f"WHERE id = ? AND status IN ({_RETRYABLE_LIST})",
                [now, now, now, message],
            )
            changed = cur.rowcount
        if not changed:
            record = self.get(message)  # raises MessageNotFound
            hint = ""
            if record.status == Status.SUPPRESSED:
                hint = (
                    f"; {record.recipient} is on brand {record.brand}'s suppression list: "
                    f"remove it (notifier queue unsuppress --brand {record.brand} "
                    f"{record.recipient}) and accept the event again"
                )
            raise InvalidState(
                f"message {message} is {record.status}; only "
                f"{', '.join(str(s) for s in RETRYABLE)} messages can be retried{hint}"
            )
        return self.get(message)

    def retry_failed(self) -> int:
        now = self.clock()
        with self.transaction() as cur:
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', reason = NULL, "
                "next_attempt_at = ?, deadline = ? + (deadline - created_at), updated_at = ? "
                "WHERE status = 'failed'",
                [now, now, now],
            )
            return cur.rowcount

    def purge(self, now: float | None = None, chunk: int = 1000) -> int:
        """Delete final messages (with their bodies and attempts) older than the retention
        period, ``chunk`` messages per transaction so intake never waits long."""
        cutoff = (self.clock() if now is None else now) - self.config.retention
        total = 0
        while True:
            with self.transaction() as cur:
                ids = [
                    int(r[0])
                    for r in cur.execute(
                        f"SELECT id FROM outbox_messages WHERE status IN ({_FINAL_LIST}) "
                        "AND updated_at < ? ORDER BY updated_at LIMIT ?",
                        [cutoff, chunk],
                    ).fetchall()
                ]
                if not ids:
                    return total
                marks = ", ".join("?" for _ in ids)
                for table, column in (
                    ("outbox_attempts", "message"),
                    ("outbox_bodies", "message"),
                    ("outbox_messages", "id"),
                ):
                    cur.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
            total += len(ids)


__all__ = [
    "CANCELLABLE",
    "DUE",
    "FINAL",
    "RETRYABLE",
    "Accepted",
    "AttemptRecord",
    "Claim",
    "Cursor",
    "Decision",
    "Delivery",
    "InvalidState",
    "MessageNotFound",
    "MessageRecord",
    "Outbox",
    "OutboxConfig",
    "Planned",
    "RawMessage",
    "Status",
    "Suppression",
    "decide",
    "describe",
    "dkim_identity",
    "expired",
    "natural_key",
    "parse_duration",
    "plan",
    "request_hash",
]
