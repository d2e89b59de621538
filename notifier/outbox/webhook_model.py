"""Webhook endpoints and deliveries as the outbox stores them: the schema (spliced into
``sqlite.py`` and ``postgres.py``), the records, and the retry schedule.

One delivery row per status event × matching endpoint, created in the transaction that
writes the event (see :meth:`Webhooks._emit`), so an event is never lost between being
written and being fanned out. Its ``webhook-id`` is ``evt_<event id>``: the same on every
retry, after a worker was killed, and on a replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: retry waits after the 1st, 2nd, … failed attempt, then the last one repeated, until
#: :data:`MAX_AGE`. Quick at first (a receiver being redeployed is back within a
#: minute), then spread out so that a receiver down over a weekend gets its events
#: within hours of coming back without being hammered meanwhile.
RETRY_DELAYS: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600)
#: a delivery is given up, and an endpoint failing all along disabled, after 3 days
MAX_AGE = 3 * 86400.0
#: ± fraction of jitter on every wait (receivers coming back are not stampeded)
JITTER = 0.10
#: how long a worker holds a claimed delivery without a heartbeat
LEASE = 120.0

ENABLED = "enabled"
DISABLED = "disabled"


def next_delay(failures: int, rng: random.Random) -> float:
    """The wait after ``failures`` failed attempts (1-based), with jitter."""
    base = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
    return base * (1 + rng.uniform(-JITTER, JITTER))


def webhook_id(event: int) -> str:
    return f"evt_{event}"


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A registered endpoint; ``secret`` fields hold sealed text (see
    :mod:`notifier.feedback.signing`) and are left out of ``repr`` and ``as_dict``."""

    id: int
    url: str
    events: tuple[str, ...]
    brand: str | None
    description: str
    state: str
    disabled_reason: str | None
    disabled_at: float | None
    failing_since: float | None
    last_success_at: float | None
    last_failure_at: float | None
    last_error: str | None
    created_at: float
    pending: int = 0
    secret: str = ""
    old_secret: str | None = None
    old_secret_until: float | None = None

    def __repr__(self) -> str:
        return f"Endpoint(id={self.id}, url={self.url!r}, state={self.state!r})"

    def as_dict(self) -> dict[str, Any]:
        def iso(value: float | None) -> str | None:
            dt = _dt(value)
            return dt.isoformat() if dt else None

        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "brand": self.brand,
            "description": self.description,
            "state": self.state,
            "disabled_reason": self.disabled_reason,
            "disabled_at": iso(self.disabled_at),
            "failing_since": iso(self.failing_since),
            "last_success_at": iso(self.last_success_at),
            "last_failure_at": iso(self.last_failure_at),
            "last_error": self.last_error,
            "pending": self.pending,
            "created_at": iso(self.created_at),
            "rotation_ends_at": iso(self.old_secret_until) if self.old_secret else None,
        }


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """One claimed delivery: what to send where, with which (sealed) secrets."""

    id: int
    endpoint: int
    event: int
    attempts: int
    window_start: float
    url: str
    secrets: tuple[str, ...]  # sealed; the current one first
    type: str
    data: str  # the event's JSON data
    created_at: float

    @property
    def webhook_id(self) -> str:
        return webhook_id(self.event)

    def __repr__(self) -> str:
        return f"WebhookJob(id={self.id}, endpoint={self.endpoint}, event={self.event})"


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """The outcome of one attempt: ``delivered`` (2xx), ``gone`` (410: the endpoint
    asked to stop) or ``retry`` (anything else, or no answer)."""

    job: WebhookJob
    outcome: str
    at: float
    duration: float
    code: int | None = None
    error: str | None = None


def schema(kind: str) -> list[str]:
    sqlite = kind == "sqlite"
    pk = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if sqlite
        else ("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    )
    ref = "INTEGER" if sqlite else "BIGINT"
    real = "REAL" if sqlite else "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE IF NOT EXISTS webhook_endpoints (
            id {pk},
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            brand TEXT,
            description TEXT NOT NULL DEFAULT '',
            secret TEXT NOT NULL,
            old_secret TEXT,
            old_secret_until {real},
            state TEXT NOT NULL,
            disabled_reason TEXT,
            disabled_at {real},
            failing_since {real},
            last_success_at {real},
            last_failure_at {real},
            last_error TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS webhook_deliveries (
            id {pk},
            endpoint {ref} NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
            event {ref} NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            window_start {real} NOT NULL,
            next_attempt_at {real},
            lease_token TEXT,
            lease_expires_at {real},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            delivered_at {real},
            last_code INTEGER,
            last_error TEXT,
            UNIQUE (endpoint, event)
        )""",
        "CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries (next_attempt_at) "
        "WHERE status = 'pending'",
        "CREATE INDEX IF NOT EXISTS webhook_leased ON webhook_deliveries (lease_expires_at) "
        "WHERE status = 'sending'",
        f"""CREATE TABLE IF NOT EXISTS webhook_attempts (
            id {pk},
            delivery {ref} NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
            at {real} NOT NULL,
            worker TEXT,
            code INTEGER,
            error TEXT,
            duration {real} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery)",
        # kept as things happen, so /metrics never counts the deliveries table
        f"""CREATE TABLE IF NOT EXISTS webhook_counters (
            endpoint {ref} NOT NULL,
            name TEXT NOT NULL,
            value {real} NOT NULL,
            PRIMARY KEY (endpoint, name)
        )""",
    ]


SQLITE_SCHEMA = schema("sqlite")
POSTGRES_SCHEMA = schema("postgres")
