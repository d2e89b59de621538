"""Inbound reports (bounces, complaints, auto-replies) stored with their raw bytes and
what they did to the message they concern, in one transaction.

A report is evidence like a sent message: its exact bytes and their SHA-256 are kept.
What it does: a hard bounce (5.x.x) moves a ``sent`` message to ``bounced`` (a final
state reached only from ``sent``); a 5.1.x one (the address does not exist) also puts
the recipient on the brand's suppression list (reason ``bounce``), as does a complaint
(reason ``complaint``). Soft bounces, auto-replies and anything else are recorded and
counted. A report that matches no message is kept for ops, never dropped. The
``message.bounced`` / ``message.complained`` status events are written in the same
transaction (:meth:`StoreBase._emit`). Nothing here parses mail: :mod:`notifier.feedback`
does that and hands over an :class:`InboundReport`.
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .base import Cursor, StoreBase
from .events import StatusEvent
from .model import Status

__all__ = ["POSTGRES_SCHEMA", "SQLITE_SCHEMA", "Feedback", "InboundReport", "ReportRecord"]

log = logging.getLogger("notifier.outbox")

_COLUMNS = (
    "received_at, kind, format, matched, message, brand, mail_from, rcpt, recipient, "
    "action, enhanced, code, diagnostic, original_message_id, feedback_type, outcome, "
    "sha256, size"
)
_TABLE = """CREATE TABLE IF NOT EXISTS outbox_reports (
        id {id},
        received_at {real} NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        matched {bool} NOT NULL,
        message {int},
        brand TEXT,
        mail_from TEXT,
        rcpt TEXT,
        recipient TEXT,
        action TEXT,
        enhanced TEXT,
        code INTEGER,
        diagnostic TEXT,
        original_message_id TEXT,
        feedback_type TEXT,
        outcome TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        raw {blob} NOT NULL
    )"""
_INDEXES = [
    "CREATE INDEX IF NOT EXISTS outbox_reports_message ON outbox_reports (message)",
    "CREATE INDEX IF NOT EXISTS outbox_reports_pending ON outbox_reports (id) "
    "WHERE outcome IN ('pending', 'pending+suppressed')",
    "CREATE INDEX IF NOT EXISTS outbox_reports_unmatched ON outbox_reports (id) "
    "WHERE matched = {false}",
]
SQLITE_SCHEMA = [
    _TABLE.format(
        id="INTEGER PRIMARY KEY AUTOINCREMENT",
        real="REAL",
        bool="INTEGER",
        int="INTEGER",
        blob="BLOB",
    ),
    *(i.format(false="0") for i in _INDEXES),
]
POSTGRES_SCHEMA = [
    _TABLE.format(
        id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        real="DOUBLE PRECISION",
        bool="BOOLEAN",
        int="BIGINT",
        blob="BYTEA",
    ),
    *(i.format(false="FALSE") for i in _INDEXES),
]

#: message states a worker may still change (a hard bounce for one waits: "pending")
_UNFINISHED = ("queued", "sending", "deferred", "held")
_UNFINISHED_LIST = ", ".join(f"'{s}'" for s in _UNFINISHED)
_PENDING_LIST = "'pending', 'pending+suppressed'"

#: report kinds whose arrival is counted per brand and event (``name`` in the counters)
_KIND_COUNTER = {"hard_bounce": "bounced", "soft_bounce": "soft_bounced", "complaint": "complained"}


@dataclass(frozen=True, slots=True)
class InboundReport:
    """One received report, parsed, ready to store. ``message`` is the id a valid VERP
    address named; ``original_message_id`` (a complaint quoting the original) is the
    other way to find it."""

    raw: bytes
    sha256: str
    kind: str
    format: str
    mail_from: str | None = None
    rcpt: str | None = None
    message: int | None = None
    recipient: str | None = None
    action: str | None = None
    enhanced: str | None = None
    code: int | None = None
    diagnostic: str | None = None
    original_message_id: str | None = None
    feedback_type: str | None = None
    #: a 5.1.x hard bounce or a complaint: the address goes on the suppression list
    suppresses: bool = False


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report; ``outcome`` says what it did (bounced, suppressed, recorded …)."""

    id: int
    received_at: datetime
    kind: str
    format: str
    matched: bool
    message: int | None
    brand: str | None
    mail_from: str | None
    rcpt: str | None
    recipient: str | None
    action: str | None
    enhanced: str | None
    code: int | None
    diagnostic: str | None
    original_message_id: str | None
    feedback_type: str | None
    outcome: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "kind": self.kind,
            "format": self.format,
            "matched": self.matched,
            "message": self.message,
            "brand": self.brand,
            "mail_from": self.mail_from,
            "rcpt": self.rcpt,
            "recipient": self.recipient,
            "action": self.action,
            "enhanced": self.enhanced,
            "code": self.code,
            "diagnostic": self.diagnostic,
            "original_message_id": self.original_message_id,
            "feedback_type": self.feedback_type,
            "outcome": self.outcome,
            "sha256": self.sha256,
            "size": self.size,
        }

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/messages/{id}`` shows of it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "received_at": self.received_at.isoformat(),
            "enhanced": self.enhanced,
            "code": self.code,
            "diagnostic": self.diagnostic,
            "feedback_type": self.feedback_type,
            "outcome": self.outcome,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class _Target:
    id: int
    brand: str
    event: str
    status: str
    recipient: str
    domain: str | None
    message_id: str


class Feedback(StoreBase):
    """Storing inbound reports and what they change (see the module docstring)."""

    def store_reports(self, reports: list[InboundReport]) -> list[ReportRecord]:
        """Store reports in one transaction (one durable commit for many: the inbound
        server groups the reports that arrive together)."""
        now = self.clock()
        out: list[ReportRecord] = []
        with self.transaction() as cur:
            counts: dict[tuple[str, str, str], float] = {}
            for report in reports:
                out.append(self._store_one(cur, report, now, counts))
            self._count(cur, counts)
        return out

    def store_report(self, report: InboundReport) -> ReportRecord:
        return self.store_reports([report])[0]

    def count_forged(self, n: int = 1) -> None:
        """A report to a VERP address whose MAC does not verify: counted, not stored."""
        with self.transaction() as cur:
            self._count(cur, {("", "", "report_forged"): float(n)})

    def reports(self, *, unmatched: bool = False, limit: int = 100) -> list[ReportRecord]:
        where = "WHERE matched = ? " if unmatched else ""
        params: list[Any] = [False] if unmatched else []
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                f"SELECT id, {_COLUMNS} FROM outbox_reports {where}ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_report(r) for r in rows]

    def message_reports(self, message: int) -> list[ReportRecord]:
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                f"SELECT id, {_COLUMNS} FROM outbox_reports WHERE message = ? ORDER BY id",
                [message],
            ).fetchall()
        return [_report(r) for r in rows]

    def report_raw(self, report: int) -> bytes:
        with self.transaction(write=False) as cur:
            row = cur.execute("SELECT raw FROM outbox_reports WHERE id = ?", [report]).fetchone()
        if row is None:
            raise KeyError(report)
        return bytes(row[0])

    # --- one report ---------------------------------------------------------------------

    def _store_one(
        self,
        cur: Cursor,
        r: InboundReport,
        now: float,
        counts: dict[tuple[str, str, str], float],
    ) -> ReportRecord:
        target = self._target(cur, r)
        outcome = "unmatched" if target is None else "recorded"
        events: list[StatusEvent] = []
        key = ("", "", "")
        if target is not None:
            key = (target.brand, target.event, "")
            if r.kind == "hard_bounce":
                outcome = self._bounce(cur, r, target, now, events)
            if r.suppresses and r.kind in ("hard_bounce", "complaint"):
                reason = "complaint" if r.kind == "complaint" else "bounce"
                self._add_suppressions(
                    cur,
                    [
                        (
                            target.brand,
                            target.recipient.lower(),
                            reason,
                            r.code,
                            r.enhanced,
                            target.id,
                            now,
                        )
                    ],
                )
                outcome = f"{outcome}+suppressed" if outcome != "recorded" else "suppressed"
            if r.kind == "complaint":
                events.append(_event("message.complained", target, r))
            if r.kind in _KIND_COUNTER:
                _add(counts, (target.brand, target.event, _KIND_COUNTER[r.kind]))
        _add(counts, (key[0], key[1], f"report_{r.kind}"))
        if target is None:
            _add(counts, ("", "", "report_unmatched"))
        # the record is the row: its fields after id and received_at are _COLUMNS'
        record = ReportRecord(
            0,
            datetime.fromtimestamp(now, UTC),
            r.kind,
            r.format,
            target is not None,
            target.id if target else None,
            target.brand if target else None,
            r.mail_from,
            r.rcpt,
            r.recipient,
            r.action,
            r.enhanced,
            r.code,
            _bound(r.diagnostic),
            _bound(r.original_message_id),
            r.feedback_type,
            outcome,
            r.sha256,
            len(r.raw),
        )
        row = cur.execute(
            f"INSERT INTO outbox_reports ({_COLUMNS}, raw) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [now, *astuple(record)[2:], r.raw],
        ).fetchone()
        assert row is not None
        report_id = int(row[0])
        events = [
            StatusEvent(e.type, e.brand, {**e.data, "report": report_id}, e.message) for e in events
        ]
        self._emit(cur, events, now)
        return replace(record, id=report_id)

    def _target(self, cur: Cursor, r: InboundReport) -> _Target | None:
        """The message a report concerns: by VERP id; a complaint also by the quoted
        Message-ID (feedback loops report to a fixed address, not the Return-Path)."""
        columns = "id, brand, event, status, recipient, domain, message_id"
        row = None
        if r.message is not None:
            row = cur.execute(
                f"SELECT {columns} FROM outbox_messages WHERE id = ?", [r.message]
            ).fetchone()
        if row is None and r.kind == "complaint" and r.original_message_id:
            row = cur.execute(
                f"SELECT {columns} FROM outbox_messages WHERE message_id = ?",
                [r.original_message_id[:300]],
            ).fetchone()
        if row is None:
            return None
        return _Target(int(row[0]), *(str(v) if v is not None else None for v in row[1:]))  # type: ignore[arg-type]

    def _bounce(
        self, cur: Cursor, r: InboundReport, t: _Target, now: float, events: list[StatusEvent]
    ) -> str:
        """``sent`` → ``bounced`` (only from ``sent``: a report about a message we have
        not finished with, or a second report, changes no state)."""
        reason = " ".join(x for x in (r.enhanced, r.diagnostic or "hard bounce") if x)[:500]
        cur.execute(
            "UPDATE outbox_messages SET status = ?, reason = ?, updated_at = ? "
            "WHERE id = ? AND status = ?",
            [str(Status.BOUNCED), f"bounced: {reason}", now, t.id, str(Status.SENT)],
        )
        if cur.rowcount == 1:
            events.append(_event("message.bounced", t, r))
            return "bounced"
        if t.status in _UNFINISHED:
            # a bounce can arrive before the worker has recorded the 250 (a local relay
            # bounces within milliseconds): applied once the message is final
            return "pending"
        return "recorded"

    def apply_pending(self, limit: int = 500) -> int:
        """Apply hard bounces that arrived before their message was recorded ``sent``
        (``notifier inbound`` calls this every second): ``sent`` → ``bounced``; a
        message that ended otherwise (failed, cancelled …) keeps its state."""
        now = self.clock()
        done = 0
        # several inbound servers (hosts, or --processes) may run this at once
        lock = "" if self.kind == "sqlite" else " FOR UPDATE OF r SKIP LOCKED"
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT r.id, r.outcome, r.kind, r.enhanced, r.code, r.diagnostic, "
                "r.feedback_type, m.id, m.brand, m.event, m.status, m.recipient, m.domain, "
                "m.message_id FROM outbox_reports r JOIN outbox_messages m ON m.id = r.message "
                f"WHERE r.outcome IN ({_PENDING_LIST}) AND m.status NOT IN ({_UNFINISHED_LIST}) "
                f"ORDER BY r.id LIMIT ?{lock}",
                [limit],
            ).fetchall()
            events: list[StatusEvent] = []
            for row in rows:
                report_id, outcome = int(row[0]), str(row[1])
                t = _Target(int(row[7]), *(None if v is None else str(v) for v in row[8:]))  # type: ignore[arg-type]
                r = InboundReport(
                    raw=b"",
                    sha256="",
                    kind=str(row[2]),
                    format="",
                    enhanced=row[3],
                    code=None if row[4] is None else int(row[4]),
                    diagnostic=row[5],
                    feedback_type=row[6],
                )
                new: list[StatusEvent] = []
                result = self._bounce(cur, r, t, now, new)
                events += [
                    StatusEvent(e.type, e.brand, {**e.data, "report": report_id}, e.message)
                    for e in new
                ]
                suffix = "+suppressed" if outcome.endswith("+suppressed") else ""
                cur.execute(
                    "UPDATE outbox_reports SET outcome = ? WHERE id = ?",
                    [result + suffix, report_id],
                )
                done += 1
            self._emit(cur, events, now)
        return done


def _event(kind: str, t: _Target, r: InboundReport) -> StatusEvent:
    return StatusEvent(
        kind,
        t.brand,
        {
            "id": t.id,
            "message_id": t.message_id,
            "brand": t.brand,
            "event": t.event,
            "recipient": t.recipient,
            "domain": t.domain,
            "kind": r.kind,
            "enhanced": r.enhanced,
            "code": r.code,
            "diagnostic": r.diagnostic,
            "feedback_type": r.feedback_type,
        },
        t.id,
    )


def _add(counts: dict[tuple[str, str, str], float], key: tuple[str, str, str]) -> None:
    counts[key] = counts.get(key, 0.0) + 1.0


def _bound(text: str | None, limit: int = 1000) -> str | None:
    return None if text is None else text[:limit]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _report(row: tuple[Any, ...]) -> ReportRecord:
    t = [_text(v) for v in row]
    return ReportRecord(
        id=int(row[0]),
        received_at=datetime.fromtimestamp(float(row[1]), UTC),
        kind=str(row[2]),
        format=str(row[3]),
        matched=bool(row[4]),
        message=None if row[5] is None else int(row[5]),
        brand=t[6],
        mail_from=t[7],
        rcpt=t[8],
        recipient=t[9],
        action=t[10],
        enhanced=t[11],
        code=None if row[12] is None else int(row[12]),
        diagnostic=t[13],
        original_message_id=t[14],
        feedback_type=t[15],
        outcome=str(row[16]),
        sha256=str(row[17]),
        size=int(row[18]),
    )
