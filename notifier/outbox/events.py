"""Status events written in the same transaction as the state change they report
(the transactional outbox pattern): a committed change always has its event, a rolled
back one never does. Webhook delivery (fan-out to endpoints, signing, retries) reads
them from ``outbox_events``; nothing here does network I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: every event type an endpoint can subscribe to
EVENT_TYPES: tuple[str, ...] = (
    "message.sent",
    "message.deferred",
    "message.failed",
    "message.bounced",
    "message.complained",
    "message.suppressed",
    "message.cancelled",
    "message.unsubscribed",
    "brand.dns_changed",
)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One thing that happened: ``type`` from :data:`EVENT_TYPES`, the brand it
    concerns, the message (if any) and the JSON-serialisable ``data`` of the payload."""

    type: str
    brand: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    message: int | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown status event type {self.type!r}")


SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        brand TEXT,
        message INTEGER,
        data TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_events_created ON outbox_events (created_at)",
]

POSTGRES_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        type TEXT NOT NULL,
        brand TEXT,
        message BIGINT,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_events_created ON outbox_events (created_at)",
]

INSERT = "INSERT INTO outbox_events (type, brand, message, data, created_at) VALUES (?, ?, ?, ?, ?)"


def rows(events: Sequence[StatusEvent], at: float) -> list[tuple[Any, ...]]:
    """Parameter rows for :data:`INSERT` (``data`` as compact JSON)."""
    return [
        (e.type, e.brand, e.message, json.dumps(e.data, separators=(",", ":"), sort_keys=True), at)
        for e in events
    ]
