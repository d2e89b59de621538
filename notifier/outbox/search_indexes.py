"""Indexes that keep reads flat as the history grows to millions of messages: the
searches of ``GET /v1/messages`` (newest first, a page at a time), ``queue stats`` and
``queue retry --failed --since``.

Every state change on PostgreSQL is a non-HOT update that adds an entry to each index
whose predicate the new row version satisfies (see ``postgres.py``): the indexes on
brand and event only hold final messages (one entry, written when the message is
done); a search for a live state reads the live rows, which the queue bounds. SQLite
rewrites an index entry only when a column it holds changes and then only for rows
its predicate matches. Searches put a validated state into the SQL as a literal, so
that the planner can prove a partial index applies (a bound parameter proves
nothing, and PostgreSQL's generic plans see only parameters)."""

from __future__ import annotations

from . import sql

_FINAL = f"WHERE status IN ({sql.FINAL_LIST})"

SQLITE_SCHEMA = [
    # SQLite appends the rowid to every index: equal keys come in id order, so a page
    # "newest first" is a walk backwards from the cursor, not a sort
    "CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox_messages (recipient)",
    "CREATE INDEX IF NOT EXISTS outbox_domain_name ON outbox_messages (domain) "
    "WHERE domain IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS outbox_brand_final ON outbox_messages (brand, status) {_FINAL}",
    f"CREATE INDEX IF NOT EXISTS outbox_event_final ON outbox_messages (event, status) {_FINAL}",
    "CREATE INDEX IF NOT EXISTS outbox_deferred ON outbox_messages (next_attempt_at) "
    "WHERE status = 'deferred'",
    # what outbox_status (status, updated_at) served, one state set each: leases,
    # held mail, purging and retrying by age (SQLite proves a partial index only from
    # the same term in the query: the queries repeat the predicate as written here)
    "CREATE INDEX IF NOT EXISTS outbox_sending ON outbox_messages (lease_expires_at) "
    "WHERE status = 'sending'",
    "CREATE INDEX IF NOT EXISTS outbox_held ON outbox_messages (sender_brand) "
    "WHERE status = 'held'",
    f"CREATE INDEX IF NOT EXISTS outbox_finished ON outbox_messages (updated_at) {_FINAL}",
    "CREATE INDEX IF NOT EXISTS outbox_failed ON outbox_messages (updated_at) "
    "WHERE status = 'failed'",
    "DROP INDEX IF EXISTS outbox_status",
]

POSTGRES_SCHEMA = [
    "CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox_messages (recipient, id)",
    "CREATE INDEX IF NOT EXISTS outbox_domain_name ON outbox_messages (domain, id) "
    "WHERE domain IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS outbox_brand_final ON outbox_messages (brand, status, id) "
    f"{_FINAL}",
    "CREATE INDEX IF NOT EXISTS outbox_event_final ON outbox_messages (event, status, id) "
    f"{_FINAL}",
    "CREATE INDEX IF NOT EXISTS outbox_deferred ON outbox_messages (next_attempt_at) "
    "WHERE status = 'deferred'",
    # queue retry --failed --since: the failed messages of the window, not of two years
    "CREATE INDEX IF NOT EXISTS outbox_failed ON outbox_messages (updated_at) "
    "WHERE status = 'failed'",
]
