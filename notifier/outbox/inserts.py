"""Storing prepared messages: one transaction for a list, idempotency keys and natural
keys honoured (a repeat returns the stored message), suppressed recipients and held
brands decided at insert, and cancelling events (``domain.renewed`` …) cancelling the
reminders still waiting."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..errors import Conflict, NotifierError, StorageError
from . import sql
from .base import Cursor
from .bodies import Bodies, StoredBody
from .changes import message_events
from .model import Accepted, NewMessage, Status
from .wakeups import Wakeups

log = logging.getLogger("notifier.outbox")


class Inserts(Bodies, Wakeups):
    def store(self, items: list[NewMessage], atomic: bool = True) -> list[Accepted | NotifierError]:
        """Insert ``items`` in one transaction; see :meth:`_store`. A storage failure
        raises and stores nothing at all."""
        if not items:
            return []
        # compressed before the write transaction: its lock is what accepts queue on
        bodies = self.encode_bodies(None, [(p.brand, p.data) for p in items])
        with self.transaction() as cur:
            results = self._store(cur, items, atomic, bodies)
            if any(isinstance(r, Accepted) and r.status == Status.QUEUED for r in results):
                self._announce_due(cur)  # wakes the workers once committed (wakeups.py)
        self._maybe_train()
        return results

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
        self,
        cur: Cursor,
        items: list[NewMessage],
        atomic: bool = True,
        encoded: list[StoredBody] | None = None,
    ) -> list[Accepted | NotifierError]:
        """Insert ``items``; an item already stored (idempotency key, natural key) returns
        the existing message. A key reused for another request raises :class:`Conflict`
        (``atomic``: the transaction rolls back) or is that item's result (nothing of it
        was inserted: ``ON CONFLICT DO NOTHING``)."""
        now = self.clock()
        if encoded is None:
            encoded = self.encode_bodies(cur, [(p.brand, p.data) for p in items])
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
                    now + self.config.lifetime(p.event),
                )
            )
        inserted = self._insert_messages(cur, rows)
        results: list[Accepted | NotifierError] = []
        bodies: list[tuple[int, str, StoredBody]] = []
        counts: Counter[tuple[str, str, str]] = Counter()
        suppressed_ids: list[int] = []
        for p, status, body in zip(items, statuses, encoded, strict=True):
            new_id = inserted.get(p.message_id)
            if new_id is None:
                try:
                    results.append(self._existing(cur, p))
                except StorageError as exc:
                    if atomic:
                        raise
                    results.append(exc)
                continue
            bodies.append((new_id, p.brand, body))
            counts[(p.brand, p.event, "accepted")] += 1
            if status == Status.SUPPRESSED:
                counts[(p.brand, p.event, "suppressed")] += 1
                suppressed_ids.append(new_id)
            if p.cancels and p.domain:
                for key in self._cancel(cur, p, new_id, now):
                    counts[key] += 1
            results.append(Accepted(new_id, status, p.language, False, p.message_id))
        self._insert_bodies(cur, bodies)
        suppressions = [(i, "message.suppressed", dict[str, Any]()) for i in suppressed_ids]
        self._emit(cur, message_events(cur, suppressions), now)  # webhooks
        self._count(cur, counts)
        return results

    def _insert_messages(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Insert message rows, many per statement (a round of SQL per row costs more than
        the row); a row whose idempotency or natural key exists is skipped. Returns
        Message-ID → id of the rows inserted, ids in ``rows`` order."""
        inserted: dict[str, int] = {}
        for start in range(0, len(rows), sql.INSERT_CHUNK):
            chunk = rows[start : start + sql.INSERT_CHUNK]
            statement = (
                sql.INSERT_MESSAGES
                + ", ".join([sql.ROW_MARKS] * len(chunk))
                + (" ON CONFLICT DO NOTHING RETURNING id, message_id")
            )
            params = [value for row in chunk for value in row]
            for new_id, message_id in cur.execute(statement, params).fetchall():
                inserted[str(message_id)] = int(new_id)
        return inserted

    def _existing(self, cur: Cursor, p: NewMessage) -> Accepted:
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
        self, cur: Cursor, p: NewMessage, new_id: int, now: float
    ) -> list[tuple[str, str, str]]:
        marks = ", ".join("?" for _ in p.cancels)
        rows = cur.execute(
            "UPDATE outbox_messages SET status = 'cancelled', reason = ?, updated_at = ?, "
            "next_attempt_at = NULL "
            f"WHERE brand = ? AND domain = ? AND event IN ({marks}) "
            f"AND status IN ({sql.CANCELLABLE_LIST}) AND id < ? RETURNING brand, event, id",
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
        changes = [(int(r[2]), "message.cancelled", {"cancelled_by": new_id}) for r in rows]
        self._emit(cur, message_events(cur, changes), now)  # webhooks
        return [(str(brand), str(event), "cancelled") for brand, event, _ in rows]
