"""The worker's side of the store: leases on due messages (claim, heartbeat, release)
and recording outcomes only while the lease is still held."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .base import Cursor
from .bodies import Bodies
from .changes import COLUMNS, outcome_events
from .model import FINAL, Claim, Delivery, Status, bucket_for, latency_bucket
from .wakeups import Wakeups

log = logging.getLogger("notifier.outbox")


class OutcomeRow(NamedTuple):
    """One outcome as it is stored on its message (:meth:`Leases._update_outcomes`)."""

    status: str
    reason: str | None
    next_attempt_at: float | None
    tries: int  # attempts to add: 1, or 0 for an outcome decided without one
    sent_at: float | None
    updated_at: float
    signed: bool  # this attempt signed: its DKIM identity and digest replace the old
    dkim_domain: str | None
    dkim_selector: str | None
    sent_sha256: str | None
    possible_duplicate: bool
    id: int


class Leases(Bodies, Wakeups):
    def claim(self, worker: str, limit: int, lease: float | None = None) -> list[Claim]:
        """Lease up to ``limit`` due messages to ``worker``: expired leases first (their
        worker died; the attempt is recorded as interrupted and the message flagged as a
        possible duplicate), then the oldest due."""
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
                # the message too, not only its attempt: the queue, the API and the
                # attempt log must agree that the recipient may get it twice
                cur.many(
                    "UPDATE outbox_messages SET attempts = attempts + 1, "
                    "possible_duplicate = ? WHERE id = ?",
                    [(True, r[0]) for r in rows],
                )
                rows = [(*r[:10], int(r[10]) + 1, *r[11:]) for r in rows]
                log.warning("reclaimed %d message(s) whose lease expired", len(rows))
            if len(rows) < limit:
                rows += self._claim_rows(cur, worker, limit - len(rows), now, until, False)
        bodies = self._decode_bodies([bytes(r[9]) for r in rows])
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
                data=data,
                attempts=int(r[10]),
                created_at=float(r[11]),
                deadline=float(r[12]),
                suppressed=bool(r[13]),
            )
            for r, data in zip(rows, bodies, strict=True)
        ]

    def warm_up(self) -> None:
        """Open this thread's connection and load what recording an outcome touches.

        A worker's recorder calls this before the first send: a fresh PostgreSQL
        backend reads the catalogs of every table and index on first use, which on a
        busy machine took longer than a hundred sends, and every one of those 250s was
        unrecorded (sent again after a ``kill -9``) meanwhile."""
        with self.transaction(write=False) as cur:
            for table, key in (
                ("outbox_messages", "id"),
                ("outbox_attempts", "message"),
                ("outbox_counters", "value"),
                ("outbox_suppressions", "created_at"),
            ):
                cur.execute(f"SELECT 1 FROM {table} WHERE {key} < 0").fetchall()

    def heartbeat(
        self, worker: str, lease: float | None = None, ids: Iterable[int] | None = None
    ) -> int:
        """Extend the lease of every message ``worker`` holds (or of those of ``ids`` it
        holds); returns how many.

        A worker passes the ids it still has in hand: a message whose outcome the worker
        recorded but the database lost (a crash of the database machine loses the last
        outcomes, see :meth:`complete`) is then not kept leased for the worker's
        lifetime; its lease expires and it is sent again, flagged a possible duplicate.

        Not waiting for the disk either: it runs on the recorder's thread between
        outcomes, and a heartbeat lost with the database machine only shortens leases
        (the messages are then sent again, flagged, as after any crash)."""
        now = self.clock()
        until = now + (lease if lease is not None else self.config.lease)
        statement = (
            "UPDATE outbox_messages SET lease_expires_at = ? "
            "WHERE lease_token = ? AND status = 'sending'"
        )
        with self.transaction(durable=False) as cur:
            if ids is None:
                cur.execute(statement, [until, worker])
                return cur.rowcount
            wanted = sorted(set(ids))
            total = 0
            for i in range(0, len(wanted), 400):
                chunk = wanted[i : i + 400]
                marks = ", ".join("?" for _ in chunk)
                cur.execute(f"{statement} AND id IN ({marks})", [until, worker, *chunk])
                total += cur.rowcount
            return total

    def complete(self, worker: str, deliveries: Sequence[Delivery]) -> list[int]:
        """Record outcomes in one transaction. A message whose lease ``worker`` no longer
        holds keeps its state (another worker owns it); its attempt is still recorded.
        Returns the ids whose lease was lost.

        The commit does not wait for the disk (``durable=False``): a relay's 250 is
        recorded within a millisecond or so, which is the window in which a killed
        worker makes a duplicate. A crash of the database *machine* can lose the last
        outcomes; their messages then return, like a killed worker's, and are sent
        again with the same Message-ID, flagged ``possible_duplicate``. Accepted mail
        is never in such a transaction.

        Safe to repeat: when a commit's answer is lost (the connection broke during
        COMMIT) the caller tries again, and outcomes already stored are not stored
        twice nor reported as lost leases."""
        if not deliveries:
            return []
        now = self.clock()
        # when each outcome was known: the relay's 250 for sent mail (else: now)
        known = [now if d.at is None else d.at for d in deliveries]
        # pipelined on PostgreSQL: a round trip only where an answer is needed (each
        # one, on a loaded machine, waits for a CPU and for the GIL: the window)
        with self.transaction(durable=False) as cur, self._pipeline(cur):
            updated = self._update_outcomes(
                cur,
                worker,
                [
                    OutcomeRow(
                        str(d.status),
                        d.reason,
                        d.next_attempt_at,
                        1 if d.attempt is not None else 0,
                        at if d.status == Status.SENT else None,
                        now,
                        d.signed,
                        d.dkim_domain,
                        d.dkim_selector,
                        d.sent_sha256,
                        bool(d.attempt and d.attempt.possible_duplicate),
                        d.id,
                    )
                    for d, at in zip(deliveries, known, strict=True)
                ],
            )
            missed = [d for d, rows in zip(deliveries, updated, strict=True) if not rows]
            done = self._already_recorded(cur, worker, missed)
            lost = [d.id for d in missed if d.id not in done]
            counts: dict[tuple[str, str, str], float] = defaultdict(float)
            for d, rows, at in zip(deliveries, updated, known, strict=True):
                if not rows or d.status not in FINAL:
                    continue
                brand, event, created_at = rows[0][2], rows[0][3], rows[0][9]  # COLUMNS
                counts[(brand, event, str(d.status))] += 1
                if d.status == Status.SENT:
                    latency = max(0.0, at - float(created_at))
                    counts[(brand, event, "latency_sum")] += latency
                    bound = bucket_for(latency)
                    if bound is not None:  # above the last: only in "sent" (+Inf)
                        counts[(brand, event, latency_bucket(bound))] += 1
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
                    if d.attempt is not None and d.id not in done
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
                    if d.suppress and d.rcpt_to and d.id not in done
                ],
            )
            self._emit(cur, outcome_events(deliveries, updated), now)  # webhooks
            self._count(cur, counts)
        if lost:
            log.warning("worker %s lost the lease of %d message(s): %s", worker, len(lost), lost)
        return lost

    def _update_outcomes(
        self, cur: Cursor, worker: str, rows: Sequence[OutcomeRow]
    ) -> list[list[tuple[Any, ...]]]:
        """Store each outcome on its message if ``worker`` still holds its lease; per
        row, the message's ``COLUMNS`` after the change (none: the lease was lost).
        PostgreSQL does them all in one statement (``PostgresOutbox``)."""
        return cur.many_returning(
            "UPDATE outbox_messages SET status = ?, reason = ?, next_attempt_at = ?, "
            "attempts = attempts + ?, sent_at = ?, updated_at = ?, lease_token = NULL, "
            "lease_expires_at = NULL, "
            "dkim_domain = CASE WHEN ? THEN ? ELSE dkim_domain END, "
            "dkim_selector = CASE WHEN ? THEN ? ELSE dkim_selector END, "
            "sent_sha256 = CASE WHEN ? THEN ? ELSE sent_sha256 END, "
            "possible_duplicate = (possible_duplicate OR ?) "
            "WHERE id = ? AND lease_token = ? AND status = 'sending' "
            f"RETURNING {COLUMNS}",
            [
                (
                    *r[:6],
                    r.signed,
                    r.dkim_domain,
                    r.signed,
                    r.dkim_selector,
                    r.signed,
                    r.sent_sha256,
                    r.possible_duplicate,
                    r.id,
                    worker,
                )
                for r in rows
            ],
        )

    def _already_recorded(self, cur: Cursor, worker: str, missed: list[Delivery]) -> set[int]:
        """Of the deliveries whose message ``worker`` no longer holds, those whose
        attempt ``worker`` already stored: an earlier try of the same outcomes that
        committed although its caller saw an error."""
        tried = {(d.id, d.attempt.at.timestamp()) for d in missed if d.attempt is not None}
        if not tried:
            return set()
        ids = sorted({i for i, _ in tried})
        found: set[int] = set()
        for i in range(0, len(ids), 400):
            chunk = ids[i : i + 400]
            marks = ", ".join("?" for _ in chunk)
            rows = cur.execute(
                "SELECT message, at FROM outbox_attempts "
                f"WHERE worker = ? AND message IN ({marks})",
                [worker, *chunk],
            ).fetchall()
            found.update(int(m) for m, at in rows if (int(m), float(at)) in tried)
        return found

    def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Give back messages ``worker`` holds but did not attempt (SIGTERM)."""
        now = self.clock()
        statement = (
            "UPDATE outbox_messages SET status = CASE WHEN attempts = 0 THEN 'queued' "
            "ELSE 'deferred' END, lease_token = NULL, lease_expires_at = NULL, updated_at = ? "
            "WHERE lease_token = ? AND status = 'sending'"
        )
        if ids is not None and not ids:
            return 0
        with self.transaction() as cur:
            if ids is None:
                cur.execute(statement, [now, worker])
                total = cur.rowcount
            else:
                total = 0
                for i in range(0, len(ids), 400):
                    chunk = list(ids[i : i + 400])
                    marks = ", ".join("?" for _ in chunk)
                    cur.execute(f"{statement} AND id IN ({marks})", [now, worker, *chunk])
                    total += cur.rowcount
            if total:
                self._announce_due(cur)  # another worker takes them at once
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
            released = cur.rowcount
            if released:
                self._announce_due(cur)
        return released
