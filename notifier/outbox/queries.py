"""Reading the store and the ops around it: one message and its evidence, searches,
stats and metrics, the suppression list and retry (purging: ``retention.py``)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from ..errors import FieldError, StorageError, ValidationError
from ..fields import domain_to_ascii
from . import sql, tallies
from .bodies import Bodies
from .model import (
    DAY,
    FINAL,
    LIVE,
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


class Queries(Bodies, Wakeups):
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
            data, data_sha, sent_sha = self._decode_body(cur, bytes(row[0])), row[1], row[2]
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
        """Messages per state (the tallies), due now, expired leases, suppressed
        addresses: index reads and small tables, whatever the size of the history.

        Every queued message is due (it is queued with ``next_attempt_at`` now); the
        deferred ones are counted through their own index. The oldest due is the one
        first in line (the next a worker claims)."""
        now = self.clock()
        tallies.compact(self)
        with self.transaction(write=False) as cur:
            counts = tallies.read(cur)
            deferred_due = cur.execute(
                "SELECT COUNT(*) FROM outbox_messages "
                "WHERE status = 'deferred' AND next_attempt_at <= ?",
                [now],
            ).fetchone()
            first = cur.execute(
                "SELECT created_at FROM outbox_messages "
                f"WHERE status IN ({sql.DUE_LIST}) AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT 1",
                [now],
            ).fetchone()
            nxt = cur.execute(
                "SELECT MIN(next_attempt_at) FROM outbox_messages WHERE status = 'deferred'"
            ).fetchone()
            expired = cur.execute(
                "SELECT COUNT(*) FROM outbox_messages "
                "WHERE status = 'sending' AND lease_expires_at <= ?",
                [now],
            ).fetchone()
        by_status = tallies.by_status(counts, Status)
        due = by_status[Status.QUEUED] + int(deferred_due[0] if deferred_due else 0)
        oldest = first[0] if first else None
        suppressed = sum(n for (_, _, s), n in counts.items() if s == tallies.SUPPRESSION_LIST)
        return {
            "database": self.kind,
            "total": sum(by_status.values()),
            "by_status": by_status,
            "due": due,
            "oldest_due_age_s": round(now - oldest, 1) if oldest is not None else None,
            "next_deferred_at": _iso(_dt(nxt[0] if nxt else None)),
            "expired_leases": int(expired[0] if expired else 0),
            "suppressed_addresses": suppressed,
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
        cursor of the page before); ``domain`` the domain name the event is about
        (any case, Unicode or A-label form: it is stored as the lower-case A-label)."""
        if status is not None and status not in sql.STATES:
            raise ValidationError(
                [FieldError("status", f"unknown state {status!r}; one of {', '.join(sql.STATES)}")]
            )
        if domain is not None:
            try:
                domain = domain_to_ascii(domain)
            except ValueError as exc:
                raise ValidationError([FieldError("domain", f"{domain!r}: {exc}")]) from exc
        # a validated state as a literal: the planner can then use the partial indexes
        # of final states (see search_indexes.py)
        where: list[str] = [] if status is None else [f"m.status = '{Status(status)}'"]
        if status is not None and Status(status) in FINAL:
            where.append(f"m.status IN ({sql.FINAL_LIST})")  # the partial indexes' term
        params: list[Any] = []
        for column, value in (
            ("brand", brand),
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
        """Counters and waiting messages for monitoring: small reads (the counters and
        the tallies, see :mod:`.tallies`), whatever the size of the history."""
        tallies.compact(self)
        with self.transaction(write=False) as cur:
            counters = cur.execute(
                "SELECT brand, event, name, value FROM outbox_counters"
            ).fetchall()
            counts = tallies.read(cur)
        live_states = {str(s) for s in LIVE}
        return Metrics(
            counters={(str(b), str(e), str(n)): float(v) for b, e, n, v in counters},
            live={k: n for k, n in counts.items() if k[2] in live_states},
            suppressed={b: n for (b, _, s), n in counts.items() if s == tallies.SUPPRESSION_LIST},
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

    def retry_failed(self, since: float = 7 * DAY) -> int:
        """Queue the messages that failed in the last ``since`` seconds: what an
        operator retries after fixing a cause, not two years of history (found through
        the partial index ``outbox_failed``, on both backends)."""
        if since <= 0:
            raise ValidationError([FieldError("since", "must be a positive duration")])
        now = self.clock()
        with self.transaction() as cur:
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', reason = NULL, "
                "next_attempt_at = ?, deadline = ? + (deadline - created_at), updated_at = ? "
                "WHERE status = 'failed' AND updated_at >= ?",
                [now, now, now, now - since],
            )
            queued = cur.rowcount
            if queued:
                self._announce_due(cur)
        return queued


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
