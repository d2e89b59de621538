"""Webhook endpoints and their deliveries: fan-out of status events in the transaction
that writes them, leases on due deliveries, outcomes with retries, replay.

Fan-out happens in :meth:`Webhooks._emit`, inside the caller's transaction, not later
from ``outbox_events``: a reader following ``outbox_events`` by id could miss an event
whose transaction took its id first but committed last (PostgreSQL hands out identity
values before commit). Only endpoints enabled at that moment get the event;
``replay`` re-sends any time range to any endpoint. Nothing here does network I/O and
secrets are opaque sealed text (see :mod:`notifier.feedback.signing`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..errors import NotifierError
from . import events as status_events
from .base import Cursor, StoreBase
from .events import StatusEvent
from .webhook_model import (
    DISABLED,
    ENABLED,
    LEASE,
    MAX_AGE,
    Endpoint,
    WebhookJob,
    WebhookResult,
    next_delay,
)

log = logging.getLogger("notifier.webhooks")

_ENDPOINT_COLUMNS = (
    "id, url, events, brand, description, state, disabled_reason, disabled_at, "
    "failing_since, last_success_at, last_failure_at, last_error, created_at, "
    "secret, old_secret, old_secret_until"
)


class EndpointNotFound(NotifierError):
    """No webhook endpoint with that id (HTTP 404, exit 1)."""


def _endpoint(row: Sequence[Any], pending: int = 0) -> Endpoint:
    return Endpoint(
        id=int(row[0]),
        url=str(row[1]),
        events=tuple(e for e in str(row[2]).split(",") if e),
        brand=row[3],
        description=str(row[4] or ""),
        state=str(row[5]),
        disabled_reason=row[6],
        disabled_at=row[7],
        failing_since=row[8],
        last_success_at=row[9],
        last_failure_at=row[10],
        last_error=row[11],
        created_at=float(row[12]),
        pending=pending,
        secret=str(row[13]),
        old_secret=row[14],
        old_secret_until=row[15],
    )


def _matches(event: StatusEvent | tuple[str, str | None], events: str, brand: str | None) -> bool:
    type_, event_brand = (event.type, event.brand) if isinstance(event, StatusEvent) else event
    return type_ in events.split(",") and (brand is None or brand == event_brand)


class Webhooks(StoreBase):
    # --- fan-out ------------------------------------------------------------------------

    def _emit(self, cur: Cursor, events: Sequence[StatusEvent], at: float) -> None:
        """Write ``events`` and, in the same transaction, one pending delivery per
        enabled endpoint that subscribes to each."""
        if not events:
            return
        endpoints = cur.execute(
            "SELECT id, events, brand FROM webhook_endpoints WHERE state = ?", [ENABLED]
        ).fetchall()
        targets = [[int(ep[0]) for ep in endpoints if _matches(e, ep[1], ep[2])] for e in events]
        if not any(targets):
            super()._emit(cur, events, at)
            return
        ids = cur.many_returning(
            status_events.INSERT + " RETURNING id", status_events.rows(events, at)
        )
        cur.many(
            "INSERT INTO webhook_deliveries (endpoint, event, status, attempts, window_start, "
            "next_attempt_at, created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?, ?)",
            [
                (endpoint, int(rows[0][0]), at, at, at, at)
                for rows, wanted in zip(ids, targets, strict=True)
                for endpoint in wanted
            ],
        )

    # --- endpoints ----------------------------------------------------------------------

    def add_endpoint(
        self, url: str, events: Sequence[str], brand: str | None, sealed: str, description: str
    ) -> Endpoint:
        """Register an endpoint (input validated by the caller: see
        :mod:`notifier.feedback.endpoints`)."""
        now = self.clock()
        with self.transaction() as cur:
            row = cur.execute(
                "INSERT INTO webhook_endpoints (url, events, brand, description, secret, state, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [url, ",".join(events), brand, description, sealed, ENABLED, now, now],
            ).fetchone()
        assert row is not None
        return self.endpoint(int(row[0]))

    def endpoint(self, endpoint: int) -> Endpoint:
        with self.transaction(write=False) as cur:
            row = cur.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", [endpoint]
            ).fetchone()
            if row is None:
                raise EndpointNotFound(f"no webhook endpoint {endpoint}")
            pending = cur.execute(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint = ? AND status = 'pending'",
                [endpoint],
            ).fetchone()
        return _endpoint(row, int(pending[0]) if pending else 0)

    def endpoints(self) -> list[Endpoint]:
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id"
            ).fetchall()
            pending = dict(
                cur.execute(
                    "SELECT endpoint, COUNT(*) FROM webhook_deliveries WHERE status = 'pending' "
                    "GROUP BY endpoint"
                ).fetchall()
            )
        return [_endpoint(r, int(pending.get(r[0], 0))) for r in rows]

    def set_endpoint_state(
        self, endpoint: int, enabled: bool, reason: str | None = None
    ) -> Endpoint:
        """Disable (with ``reason``) or enable an endpoint; enabling clears its failure
        record, so the 3-day clock starts again."""
        now = self.clock()
        with self.transaction() as cur:
            if enabled:
                cur.execute(
                    "UPDATE webhook_endpoints SET state = ?, disabled_reason = NULL, "
                    "disabled_at = NULL, failing_since = NULL, updated_at = ? WHERE id = ?",
                    [ENABLED, now, endpoint],
                )
            else:
                cur.execute(
                    "UPDATE webhook_endpoints SET state = ?, disabled_reason = ?, "
                    "disabled_at = ?, updated_at = ? WHERE id = ?",
                    [DISABLED, reason or "disabled by ops", now, now, endpoint],
                )
            if cur.rowcount == 0:
                raise EndpointNotFound(f"no webhook endpoint {endpoint}")
        return self.endpoint(endpoint)

    def rotate_endpoint_secret(self, endpoint: int, sealed: str, grace: float) -> Endpoint:
        """Make ``sealed`` the signing secret; the current one keeps signing too (a second
        signature) for ``grace`` seconds, so receivers can switch without a gap."""
        now = self.clock()
        with self.transaction() as cur:
            cur.execute(
                "UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = ?, "
                "secret = ?, updated_at = ? WHERE id = ?",
                [now + grace, sealed, now, endpoint],
            )
            if cur.rowcount == 0:
                raise EndpointNotFound(f"no webhook endpoint {endpoint}")
        return self.endpoint(endpoint)

    def delete_endpoint(self, endpoint: int) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM webhook_endpoints WHERE id = ?", [endpoint])
            if cur.rowcount == 0:
                raise EndpointNotFound(f"no webhook endpoint {endpoint}")

    # --- the dispatcher's side: leases, outcomes -------------------------------------

    def claim_webhooks(self, worker: str, limit: int, lease: float = LEASE) -> list[WebhookJob]:
        """Lease up to ``limit`` due deliveries of enabled endpoints (expired leases
        first: their worker died mid-attempt)."""
        now = self.clock()
        with self.transaction(write=False) as cur:  # most polls find nothing: no write lock
            if not cur.execute(
                "SELECT 1 FROM webhook_deliveries WHERE (status = 'pending' AND "
                "next_attempt_at <= ?) OR (status = 'sending' AND lease_expires_at <= ?) LIMIT 1",
                [now, now],
            ).fetchone():
                return []
        lock = "" if self.kind == "sqlite" else " FOR UPDATE OF d SKIP LOCKED"
        picked: list[int] = []
        with self.transaction() as cur:
            for where, order in (
                ("d.status = 'sending' AND d.lease_expires_at <= ?", "d.lease_expires_at"),
                ("d.status = 'pending' AND d.next_attempt_at <= ?", "d.next_attempt_at, d.id"),
            ):
                if len(picked) >= limit:
                    break
                ids = [
                    int(r[0])
                    for r in cur.execute(
                        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e "
                        f"ON e.id = d.endpoint WHERE e.state = ? AND {where} ORDER BY {order} "
                        f"LIMIT ?{lock}",
                        [ENABLED, now, limit - len(picked)],
                    ).fetchall()
                ]
                if ids:
                    marks = ", ".join("?" for _ in ids)
                    cur.execute(
                        "UPDATE webhook_deliveries SET status = 'sending', lease_token = ?, "
                        f"lease_expires_at = ?, updated_at = ? WHERE id IN ({marks})",
                        [worker, now + lease, now, *ids],
                    )
                    picked += ids
            if not picked:
                return []
            marks = ", ".join("?" for _ in picked)
            rows = cur.execute(
                "SELECT d.id, d.endpoint, d.event, d.attempts, d.window_start, e.url, e.secret, "
                "e.old_secret, e.old_secret_until, v.type, v.data, v.created_at "
                "FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint "
                f"JOIN outbox_events v ON v.id = d.event WHERE d.id IN ({marks}) ORDER BY d.id",
                picked,
            ).fetchall()
        return [
            WebhookJob(
                id=int(r[0]),
                endpoint=int(r[1]),
                event=int(r[2]),
                attempts=int(r[3]),
                window_start=float(r[4]),
                url=str(r[5]),
                secrets=(str(r[6]),) + ((str(r[7]),) if r[7] and float(r[8] or 0) > now else ()),
                type=str(r[9]),
                data=str(r[10]),
                created_at=float(r[11]),
            )
            for r in rows
        ]

    def heartbeat_webhooks(self, worker: str, lease: float = LEASE) -> int:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE webhook_deliveries SET lease_expires_at = ? "
                "WHERE lease_token = ? AND status = 'sending'",
                [self.clock() + lease, worker],
            )
            return cur.rowcount

    def release_webhooks(self, worker: str, ids: Sequence[int]) -> int:
        """Give back claimed deliveries not attempted (the worker is stopping)."""
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE webhook_deliveries SET status = 'pending', lease_token = NULL, "
                "lease_expires_at = NULL "
                f"WHERE lease_token = ? AND status = 'sending' AND id IN ({marks})",
                [worker, *ids],
            )
            return cur.rowcount

    def complete_webhooks(self, worker: str, results: Sequence[WebhookResult]) -> list[int]:
        """Record attempts in one transaction: delivered, given up (410, or past
        :data:`MAX_AGE`) or due again after a jittered wait. An endpoint that answered
        410, or has failed without a success for :data:`MAX_AGE`, is disabled.
        Returns the deliveries whose lease was lost (another worker owns them now)."""
        if not results:
            return []
        now = self.clock()
        updates: list[tuple[Any, ...]] = []
        counts: dict[tuple[int, str], float] = defaultdict(float)
        for r in results:
            job = r.job
            if r.outcome == "delivered":
                status, due = "delivered", None
            elif r.outcome == "gone" or r.at - job.window_start >= MAX_AGE:
                status, due = "failed", None
            else:
                status, due = "pending", r.at + next_delay(job.attempts + 1, self.rng)
            counts[(job.endpoint, status if status != "pending" else "retried")] += 1
            updates.append(
                (
                    status,
                    due,
                    now,
                    r.at if status == "delivered" else None,
                    r.code,
                    r.error,
                    job.id,
                    worker,
                )
            )
        with self.transaction() as cur:
            done = cur.many_returning(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, "
                "next_attempt_at = ?, updated_at = ?, delivered_at = ?, last_code = ?, "
                "last_error = ?, lease_token = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND lease_token = ? AND status = 'sending' RETURNING id",
                updates,
            )
            cur.many(
                "INSERT INTO webhook_attempts (delivery, at, worker, code, error, duration) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.job.id, r.at, worker, r.code, r.error, r.duration)
                    for r, rows in zip(results, done, strict=True)
                    if rows
                ],
            )
            self._endpoint_health(cur, results, now)
            cur.many(
                "INSERT INTO webhook_counters (endpoint, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (endpoint, name) "
                "DO UPDATE SET value = webhook_counters.value + excluded.value",
                [(*key, value) for key, value in sorted(counts.items())],
            )
        return [r.job.id for r, rows in zip(results, done, strict=True) if not rows]

    def _endpoint_health(self, cur: Cursor, results: Sequence[WebhookResult], now: float) -> None:
        latest: dict[int, WebhookResult] = {}
        first_failure: dict[int, float] = {}
        for r in sorted(results, key=lambda r: r.at):
            latest[r.job.endpoint] = r
            if r.outcome != "delivered":
                first_failure.setdefault(r.job.endpoint, r.at)
        for endpoint, r in sorted(latest.items()):
            if r.outcome == "delivered":
                cur.execute(
                    "UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = ? "
                    "WHERE id = ?",
                    [r.at, endpoint],
                )
                continue
            error = r.error or f"HTTP {r.code}"
            cur.execute(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?), "
                "last_failure_at = ?, last_error = ? WHERE id = ?",
                [first_failure[endpoint], r.at, error[:500], endpoint],
            )
            if r.outcome == "gone":
                reason = "the endpoint answered 410 Gone"
                cur.execute(
                    "UPDATE webhook_endpoints SET state = ?, disabled_reason = ?, "
                    "disabled_at = ? WHERE id = ? AND state = ?",
                    [DISABLED, reason, now, endpoint, ENABLED],
                )
            else:
                reason = f"failing for {MAX_AGE / 86400:g} days (last error: {error[:200]})"
                cur.execute(
                    "UPDATE webhook_endpoints SET state = ?, disabled_reason = ?, "
                    "disabled_at = ? WHERE id = ? AND state = ? AND failing_since <= ?",
                    [DISABLED, reason, now, endpoint, ENABLED, now - MAX_AGE],
                )
            if cur.rowcount:
                log.warning("webhook endpoint %s disabled: %s", endpoint, reason)

    # --- ops ----------------------------------------------------------------------------

    def replay_webhooks(self, since: float, until: float, endpoint: int | None = None) -> int:
        """Deliver again every event written in ``[since, until)`` to the endpoints that
        subscribe to it (all enabled ones, or ``endpoint`` whatever its state), with
        the same ``webhook-id``; returns how many deliveries were queued. A delivery in
        flight is left to finish."""
        now = self.clock()
        with self.transaction() as cur:
            statement = "SELECT id, events, brand FROM webhook_endpoints WHERE "
            params: list[Any] = []
            if endpoint is None:
                statement += "state = ?"
                params.append(ENABLED)
            else:
                statement += "id = ?"
                params.append(endpoint)
            endpoints = cur.execute(statement, params).fetchall()
            if endpoint is not None and not endpoints:
                raise EndpointNotFound(f"no webhook endpoint {endpoint}")
            total = 0
            after = 0
            while True:
                events = cur.execute(
                    "SELECT id, type, brand FROM outbox_events WHERE created_at >= ? "
                    "AND created_at < ? AND id > ? ORDER BY id LIMIT 1000",
                    [since, until, after],
                ).fetchall()
                if not events:
                    return total
                after = int(events[-1][0])
                rows = [
                    (int(ep[0]), int(ev[0]), now, now, now, now)
                    for ev in events
                    for ep in endpoints
                    if _matches((str(ev[1]), ev[2]), ep[1], ep[2])
                ]
                done = cur.many_returning(
                    "INSERT INTO webhook_deliveries (endpoint, event, status, attempts, "
                    "window_start, next_attempt_at, created_at, updated_at) "
                    "VALUES (?, ?, 'pending', 0, ?, ?, ?, ?) ON CONFLICT (endpoint, event) "
                    "DO UPDATE SET status = 'pending', window_start = excluded.window_start, "
                    "next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at "
                    "WHERE webhook_deliveries.status <> 'sending' RETURNING id",
                    rows,
                )
                total += sum(1 for r in done if r)

    def delivery_log(self, endpoint: int, limit: int = 50) -> list[dict[str, Any]]:
        """The latest deliveries of ``endpoint`` with their attempts (newest first)."""
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                "SELECT d.id, d.event, v.type, d.status, d.attempts, d.next_attempt_at, "
                "d.delivered_at, d.last_code, d.last_error FROM webhook_deliveries d "
                "JOIN outbox_events v ON v.id = d.event WHERE d.endpoint = ? "
                "ORDER BY d.id DESC LIMIT ?",
                [endpoint, limit],
            ).fetchall()
        keys = "id event type status attempts next_attempt_at delivered_at last_code last_error"

        return [dict(zip(keys.split(), r, strict=True)) for r in rows]

    def webhook_metrics(self) -> tuple[list[Endpoint], dict[tuple[int, str], float]]:
        """Endpoints (with pending counts) and the per-endpoint counters, for /metrics."""
        with self.transaction(write=False) as cur:
            counters = cur.execute("SELECT endpoint, name, value FROM webhook_counters").fetchall()
        return self.endpoints(), {(int(e), str(n)): float(v) for e, n, v in counters}

    def unsubscribe(self, brand: str, email: str, event: str, reason: str) -> None:
        """Suppress ``email``'s optional mail of ``brand`` (a recipient's own choice) and
        report it as ``message.unsubscribed``, in one transaction."""
        now = self.clock()
        email = email.lower()
        with self.transaction() as cur:
            self._add_suppressions(cur, [(brand, email, reason, None, None, None, now)])
            data = {"brand": brand, "recipient": email, "event": event, "reason": reason}
            self._emit(cur, [StatusEvent("message.unsubscribed", brand, data)], now)
