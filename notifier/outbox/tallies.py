"""Messages per (brand, event, state) and addresses per suppression list, kept as rows
change, so that ``/metrics`` and ``queue stats`` read a few hundred rows whatever the
size of the history (counting live rows by scanning cost 0.8 s at a million messages).

The database keeps them itself, with triggers on ``outbox_messages`` and
``outbox_suppressions``: every path that changes a state (intake, claims, outcomes,
bounces, cancellations, retention purges, a hand-written ``UPDATE``) is counted, and
no Python code path can forget to.

- SQLite (one writer at a time): the triggers add to ``outbox_tallies`` directly.
- PostgreSQL: concurrent transactions updating one shared counter row would wait on
  each other and, taking those row locks in varying orders between their message row
  locks, deadlock. The triggers therefore only *append* deltas to ``outbox_tally_log``
  (no row is locked); readers add the log to ``outbox_tallies``, and :func:`compact`
  folds the log in now and then (every ``/metrics`` scrape and ``queue stats``).

The suppression lists are tallied under event ``''`` and the pseudo-state
:data:`SUPPRESSION_LIST`. The tallies are filled from the stored rows once, when the
schema that brings them is applied (``outbox_meta`` key ``tallies``).
"""

from __future__ import annotations

from typing import Any

from .base import Cursor, StoreBase

#: the pseudo-state under which a brand's suppression-list size is tallied
SUPPRESSION_LIST = "suppression_list"

_TABLES = [
    """CREATE TABLE IF NOT EXISTS outbox_tallies (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (brand, event, status)
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_tally_log (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        n BIGINT NOT NULL
    )""",
]

_ONCE = "NOT EXISTS (SELECT 1 FROM outbox_meta WHERE key = 'tallies')"
#: run after the triggers exist (PostgreSQL: CREATE TRIGGER locks out writers until
#: commit, so no change slips between this count and the first counted change)
_BACKFILL = [
    "INSERT INTO outbox_tallies (brand, event, status, n) "
    f"SELECT brand, event, status, COUNT(*) FROM outbox_messages WHERE {_ONCE} "
    "GROUP BY brand, event, status",
    "INSERT INTO outbox_tallies (brand, event, status, n) "
    f"SELECT brand, '', '{SUPPRESSION_LIST}', COUNT(*) FROM outbox_suppressions "
    f"WHERE {_ONCE} GROUP BY brand",
    "INSERT INTO outbox_meta (key, value) VALUES ('tallies', '1') ON CONFLICT (key) DO NOTHING",
]


def _sqlite_add(brand: str, event: str, status: str, n: int) -> str:
    return (
        f"INSERT INTO outbox_tallies (brand, event, status, n) VALUES ({brand}, {event}, "
        f"{status}, {n}) ON CONFLICT (brand, event, status) DO UPDATE SET n = n + {n};"
    )


_LIST = f"'{SUPPRESSION_LIST}'"
_NO_EVENT = "''"
SQLITE_SCHEMA = [
    *_TABLES,
    "CREATE TRIGGER IF NOT EXISTS outbox_tally_insert AFTER INSERT ON outbox_messages "
    f"BEGIN {_sqlite_add('NEW.brand', 'NEW.event', 'NEW.status', 1)} END",
    "CREATE TRIGGER IF NOT EXISTS outbox_tally_update AFTER UPDATE OF status ON outbox_messages "
    "WHEN OLD.status IS NOT NEW.status BEGIN "
    f"{_sqlite_add('OLD.brand', 'OLD.event', 'OLD.status', -1)} "
    f"{_sqlite_add('NEW.brand', 'NEW.event', 'NEW.status', 1)} END",
    "CREATE TRIGGER IF NOT EXISTS outbox_tally_delete AFTER DELETE ON outbox_messages "
    f"BEGIN {_sqlite_add('OLD.brand', 'OLD.event', 'OLD.status', -1)} END",
    "CREATE TRIGGER IF NOT EXISTS outbox_tally_suppress AFTER INSERT ON outbox_suppressions "
    f"BEGIN {_sqlite_add('NEW.brand', _NO_EVENT, _LIST, 1)} END",
    "CREATE TRIGGER IF NOT EXISTS outbox_tally_unsuppress AFTER DELETE ON outbox_suppressions "
    f"BEGIN {_sqlite_add('OLD.brand', _NO_EVENT, _LIST, -1)} END",
    *_BACKFILL,
]


def _pg_function(name: str, body: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {body} RETURN NULL; END $$"
    )


_LOG = "INSERT INTO outbox_tally_log (brand, event, status, n) "
POSTGRES_SCHEMA = [
    *_TABLES,
    # inserts and deletes come in batches (intake: 250 rows a statement; purge): one
    # delta row per (brand, event, state) and statement, from the transition table
    _pg_function(
        "outbox_tally_inserted",
        f"{_LOG}SELECT brand, event, status, COUNT(*) FROM new_rows GROUP BY 1, 2, 3;",
    ),
    _pg_function(
        "outbox_tally_deleted",
        f"{_LOG}SELECT brand, event, status, -COUNT(*) FROM old_rows GROUP BY 1, 2, 3;",
    ),
    # a state change: only rows whose state changed (a trigger with a column list may
    # not have transition tables, and heartbeats update many rows of unchanged state)
    _pg_function(
        "outbox_tally_changed",
        f"{_LOG}VALUES (OLD.brand, OLD.event, OLD.status, -1), "
        "(NEW.brand, NEW.event, NEW.status, 1);",
    ),
    _pg_function(
        "outbox_tally_suppressed",
        f"{_LOG}SELECT brand, '', {_LIST}, COUNT(*) FROM new_rows GROUP BY 1;",
    ),
    _pg_function(
        "outbox_tally_unsuppressed",
        f"{_LOG}SELECT brand, '', {_LIST}, -COUNT(*) FROM old_rows GROUP BY 1;",
    ),
    "CREATE OR REPLACE TRIGGER outbox_tally_insert AFTER INSERT ON outbox_messages "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION outbox_tally_inserted()",
    "CREATE OR REPLACE TRIGGER outbox_tally_delete AFTER DELETE ON outbox_messages "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION outbox_tally_deleted()",
    "CREATE OR REPLACE TRIGGER outbox_tally_update AFTER UPDATE OF status ON outbox_messages "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) "
    "EXECUTE FUNCTION outbox_tally_changed()",
    "CREATE OR REPLACE TRIGGER outbox_tally_suppress AFTER INSERT ON outbox_suppressions "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION outbox_tally_suppressed()",
    "CREATE OR REPLACE TRIGGER outbox_tally_unsuppress AFTER DELETE ON outbox_suppressions "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION outbox_tally_unsuppressed()",
    *_BACKFILL,
]

#: the tallies as of one snapshot: the folded rows plus the deltas not yet folded in
READ = (
    "SELECT brand, event, status, SUM(n) FROM (SELECT brand, event, status, n "
    "FROM outbox_tallies UNION ALL SELECT brand, event, status, n FROM outbox_tally_log) t "
    "GROUP BY brand, event, status"
)


def read(cur: Cursor) -> dict[tuple[str, str, str], int]:
    """``(brand, event, state) → rows`` (suppression lists: ``(brand, '',
    SUPPRESSION_LIST)``), zero counts left out."""
    out: dict[tuple[str, str, str], int] = {}
    for brand, event, status, n in cur.execute(READ).fetchall():
        if n:
            out[(str(brand), str(event), str(status))] = int(n)
    return out


def compact(store: StoreBase) -> None:
    """Fold the deltas logged since the last call into ``outbox_tallies`` (PostgreSQL;
    the SQLite triggers write the tallies directly and leave the log empty). Two
    callers at once are safe: the second's DELETE waits for the first's rows and
    skips them; the tallies are updated in key order."""
    if store.kind != "postgres":
        return
    with store.transaction() as cur:
        row = cur.execute("SELECT EXISTS (SELECT 1 FROM outbox_tally_log)").fetchone()
        if not row or not row[0]:
            return
        cur.execute(
            "WITH moved AS (DELETE FROM outbox_tally_log RETURNING brand, event, status, n) "
            "INSERT INTO outbox_tallies (brand, event, status, n) "
            "SELECT brand, event, status, SUM(n) FROM moved GROUP BY brand, event, status "
            "ORDER BY brand, event, status ON CONFLICT (brand, event, status) "
            "DO UPDATE SET n = outbox_tallies.n + excluded.n"
        )


def by_status(tallies: dict[tuple[str, str, str], int], states: Any) -> dict[str, int]:
    """Rows per state over every brand and event."""
    out = {str(s): 0 for s in states}
    for (_, _, status), n in tallies.items():
        if status in out:
            out[status] += n
    return out
