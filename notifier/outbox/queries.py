"""Reading the store and the ops around it: one message and its evidence, searches,
stats and metrics, the suppression list, retry and purge."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from ..errors import FieldError, StorageError, ValidationError
from . import sql
from .model import (
    RETRYABLE,
    AttemptRecord,
    InvalidState,
    MessageNotFound,
    MessageRecord,
    Metrics,
    RawMessage,
    Status,
    Suppression,
    _dt,
    _iso,
)
from .wakeups import Wakeups

log = logging.getLogger("notifier.outbox")


class Queries(Wakeups):
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
        statement = (
            "SELECT brand, email, reason, code, enhanced, message, created_at "
            "FROM outbox_suppressions"
        )
        params: list[Any] = []
        if brand is not None:
            statement += " WHERE brand = ?"
            params.append(brand)
        with self.transaction(write=False) as cur:
            rows = cur.execute(statement + " ORDER BY brand, email", params).fetchall()
        return [
            Suppression(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromtimestamp(r[6], UTC))
            for r in rows
        ]

    # --- reading -----------------------------------------------------------------------

    def get(self, message: int) -> MessageRecord:
        records = self._page("m.id = ?", [message], 1)
        if not records:
            raise MessageNotFound(f"no message {message}")
        return records[0]

    def _page(self, where: str, params: list[Any], limit: int) -> list[MessageRecord]:
        """Messages matching ``where`` (on ``m``), newest first, with their attempts:
        one statement, so one snapshot on either database."""
        columns = ", ".join(f"m.{c.strip()}" for c in sql.MESSAGE_COLUMNS.split(","))
        statement = (
            f"SELECT {columns}, a.at, a.worker, a.outcome, a.host, a.code, a.enhanced, "
            "a.text, a.possible_duplicate, a.sha256 "
            f"FROM (SELECT * FROM outbox_messages m WHERE {where} ORDER BY m.id DESC LIMIT ?) m "
            "LEFT JOIN outbox_attempts a ON a.message = m.id ORDER BY m.id DESC, a.id"
        )
        with self.transaction(write=False) as cur:
            rows = cur.execute(statement, [*params, limit]).fetchall()
        width = len(sql.MESSAGE_COLUMNS.split(","))
        grouped: dict[int, tuple[tuple[Any, ...], list[AttemptRecord]]] = {}
        for row in rows:
            head, a = row[:width], row[width:]
            entry = grouped.setdefault(int(head[0]), (head, []))
            if a[0] is not None:
                entry[1].append(
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
                )
        return [_record(head, tuple(log_)) for head, log_ in grouped.values()]

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
                f"WHERE status IN ({sql.DUE_LIST}) AND next_attempt_at <= ?",
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
        domain: str | None = None,
    ) -> list[MessageRecord]:
        """Messages matching every filter given, newest first; ``before`` an id (the
        cursor of the page before); ``domain`` the domain name the event is about."""
        if status is not None and status not in sql.STATES:
            raise ValidationError(
                [FieldError("status", f"unknown state {status!r}; one of {', '.join(sql.STATES)}")]
            )
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("brand", brand),
            ("status", None if status is None else str(status)),
            ("event", event),
            ("recipient", recipient.lower() if recipient else None),
            ("domain", domain),
        ):
            if value is not None:
                where.append(f"m.{column} = ?")
                params.append(value)
        if before is not None:
            where.append("m.id < ?")
            params.append(before)
        return self._page(" AND ".join(where) or "1 = 1", params, limit)

    def metrics(self) -> Metrics:
        """Counters and waiting messages for monitoring: small reads (the counters table,
        the live states through their index), whatever the size of the history."""
        with self.transaction(write=False) as cur:
            counters = cur.execute(
                "SELECT brand, event, name, value FROM outbox_counters"
            ).fetchall()
            live = cur.execute(
                "SELECT brand, event, status, COUNT(*) FROM outbox_messages "
                f"WHERE status IN ({sql.LIVE_LIST}) GROUP BY brand, event, status"
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
                f"WHERE id = ? AND status IN ({sql.RETRYABLE_LIST})",
                [now, now, now, message],
            )
            changed = cur.rowcount
            if changed:
                self._announce_due(cur)
        if changed:
            self._announced_due()
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
            queued = cur.rowcount
            if queued:
                self._announce_due(cur)
        if queued:
            self._announced_due()
        return queued

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
                        f"SELECT id FROM outbox_messages WHERE status IN ({sql.FINAL_LIST}) "
                        "AND updated_at < ? ORDER BY updated_at LIMIT ?",
                        [cutoff, chunk],
                    ).fetchall()
                ]
                if not ids:
                    return total
                marks = ", ".join("?" for _ in ids)
                for table, column in (
                    ("outbox_reports", "message"),
                    ("outbox_attempts", "message"),
                    ("outbox_bodies", "message"),
                    ("outbox_messages", "id"),
                ):
                    cur.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
            total += len(ids)


def _record(row: tuple[Any, ...], attempt_log: tuple[AttemptRecord, ...]) -> MessageRecord:
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
        attempt_log=attempt_log,
    )
