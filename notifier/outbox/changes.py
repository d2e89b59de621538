"""Message state changes → ``message.*`` status events, with the payload data a
receiving service needs to act without calling back: which message, to whom, about
which domain, what state, why (the SMTP reply), how many attempts, when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .base import Cursor
from .events import StatusEvent
from .model import Delivery, Status

#: the event a recorded outcome reports
OUTCOME_EVENTS: Mapping[Status, str] = {
    Status.SENT: "message.sent",
    Status.DEFERRED: "message.deferred",
    Status.FAILED: "message.failed",
    Status.SUPPRESSED: "message.suppressed",
}

#: a message's columns in its status events (in this order)
COLUMNS = (
    "id, message_id, brand, event, domain, recipient, status, reason, attempts, "
    "created_at, updated_at, sent_at, next_attempt_at, possible_duplicate"
)


def iso(value: Any) -> str | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC).isoformat()


def message_events(
    cur: Cursor, changes: Sequence[tuple[int, str, Mapping[str, Any]]]
) -> list[StatusEvent]:
    """One event per ``(message id, event type, extra data)``, the message as ``cur``
    sees it now (call after the change, in its transaction)."""
    if not changes:
        return []
    ids = sorted({c[0] for c in changes})
    rows: dict[int, tuple[Any, ...]] = {}
    for i in range(0, len(ids), 400):
        chunk = ids[i : i + 400]
        marks = ", ".join("?" for _ in chunk)
        for row in cur.execute(
            f"SELECT {COLUMNS} FROM outbox_messages WHERE id IN ({marks})", chunk
        ).fetchall():
            rows[int(row[0])] = row
    return events_of(changes, rows)


def events_of(
    changes: Sequence[tuple[int, str, Mapping[str, Any]]], rows: Mapping[int, Sequence[Any]]
) -> list[StatusEvent]:
    """The events of ``changes`` from their messages' ``COLUMNS`` rows (by id)."""
    out = []
    for message, type_, extra in changes:
        r = rows.get(message)
        if r is None:
            continue
        data = {
            "id": int(r[0]),
            "message_id": r[1],
            "brand": r[2],
            "event": r[3],
            "domain": r[4],
            "recipient": r[5],
            "status": r[6],
            "reason": r[7],
            "attempts": int(r[8]),
            "created_at": iso(r[9]),
            "updated_at": iso(r[10]),
            "sent_at": iso(r[11]),
            "next_attempt_at": iso(r[12]),
            "possible_duplicate": bool(r[13]),
            **extra,
        }
        out.append(StatusEvent(type_, str(r[2]), data, message=int(r[0])))
    return out


def outcome_events(
    deliveries: Sequence[Delivery], updated: Sequence[Sequence[Sequence[Any]]]
) -> list[StatusEvent]:
    """The events of outcomes recorded by ``Leases.complete``: ``updated`` holds the
    ``COLUMNS`` rows each update returned (an empty one: the lease was lost and nothing
    changed), so no second look at the messages is needed."""
    changes = []
    rows: dict[int, Sequence[Any]] = {}
    for d, returned in zip(deliveries, updated, strict=True):
        type_ = OUTCOME_EVENTS.get(d.status)
        if not returned or type_ is None:
            continue
        a = d.attempt
        smtp = (
            None
            if a is None
            else {"host": a.host, "code": a.code, "enhanced": a.enhanced, "text": a.text[:500]}
        )
        changes.append((d.id, type_, {"smtp": smtp}))
        rows[d.id] = returned[0]
    return events_of(changes, rows)
