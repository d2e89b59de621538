"""SQL shared by both backends (``?`` placeholders; PostgreSQL's are rewritten in
``postgres.py``): column lists, state lists and the one-time counter backfill."""

from __future__ import annotations

from .model import (
    CANCELLABLE,
    DUE,
    FINAL,
    LATENCY_BUCKETS,
    LIVE,
    RETRYABLE,
    SUBSECOND_BUCKETS,
    Status,
    latency_counter,
)

MESSAGE_COLUMNS = (
    "id, brand, sender_brand, sign_brand, event, mandatory, domain, recipient, language, "
    "status, reason, idempotency_key, message_id, mail_from, rcpt_to, data_sha256, attempts, "
    "created_at, updated_at, next_attempt_at, deadline, sent_at, lease_expires_at, "
    "dkim_domain, dkim_selector, sent_sha256, possible_duplicate"
)
#: what a claim returns, qualified for UPDATE … RETURNING on both backends: the body
#: lives in its own table (written once, never updated, so state changes rewrite a
#: small row) and the suppression check rides along
CLAIM_COLUMNS = ", ".join(
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
DUE_LIST = ", ".join(f"'{s}'" for s in DUE)
FINAL_LIST = ", ".join(f"'{s}'" for s in FINAL)
CANCELLABLE_LIST = ", ".join(f"'{s}'" for s in CANCELLABLE)
RETRYABLE_LIST = ", ".join(f"'{s}'" for s in RETRYABLE)

LIVE_LIST = ", ".join(f"'{s}'" for s in LIVE)
STATES = tuple(str(s) for s in Status)
INSERT_MESSAGES = (
    "INSERT INTO outbox_messages (brand, sender_brand, sign_brand, event, mandatory, "
    "domain, recipient, language, idempotency_key, request_hash, dedupe_key, "
    "message_id, mail_from, rcpt_to, data_sha256, status, reason, created_at, "
    "updated_at, next_attempt_at, deadline) VALUES "
)
ROW_MARKS = "(" + ", ".join(["?"] * 21) + ")"
#: rows per INSERT: 21 parameters each stays far below either database's limit
INSERT_CHUNK = 250


def backfill_counters() -> list[str]:
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


def backfill_latency_buckets() -> list[str]:
    """Statements that fill the sub-second latency buckets once, for a database whose
    counters predate them, from the sent messages still stored; run before
    :func:`backfill_counters` (which fills every bucket of an older database itself).

    The old buckets (1 s and up) keep their names and counts. Messages purged before
    the upgrade are in those but not in the new ones: each new bucket still never
    exceeds the next, and every ``rate()`` over a window after the upgrade is exact."""
    when = (
        "EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'counters') "
        "AND NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'latency_subsecond')"
    )
    statements = [
        "INSERT INTO outbox_counters (brand, event, name, value) "
        f"SELECT brand, event, '{latency_counter(b)}', COUNT(*) FROM outbox_messages "
        "WHERE status = 'sent' AND sent_at IS NOT NULL "
        f"AND sent_at - created_at <= {float(b)!r} AND {when} GROUP BY brand, event "
        "ON CONFLICT (brand, event, name) DO NOTHING"
        for b in SUBSECOND_BUCKETS
    ]
    statements.append(
        "INSERT INTO outbox_meta (key, value) VALUES ('latency_subsecond', '1') "
        "ON CONFLICT (key) DO NOTHING"
    )
    return statements
