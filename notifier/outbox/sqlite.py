"""The embedded outbox: one SQLite file (``var/notifier.db``) in WAL mode.

``synchronous=FULL``: a commit is on disk before ``accept`` returns (NORMAL can lose
the last commits on power loss). Every write transaction is ``BEGIN IMMEDIATE``, so
writers — the API and any number of worker processes — queue on the database lock
(up to ``busy_timeout``) instead of failing half-way; a claim therefore cannot hand
the same message to two workers. A lock that is not released in time, a full disk or
an unreadable file surface as :class:`StorageError` (HTTP 503) and nothing is written.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StorageError
from . import bodies, brand_dns, search_indexes, sql, tallies, webhook_model
from . import events as status_events
from . import feedback as inbound_reports
from .base import Cursor
from .store import Outbox

log = logging.getLogger("notifier.outbox")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        sender_brand TEXT NOT NULL,
        sign_brand TEXT NOT NULL,
        event TEXT NOT NULL,
        mandatory INTEGER NOT NULL,
        domain TEXT,
        recipient TEXT NOT NULL,
        language TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        dedupe_key TEXT,
        message_id TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_to TEXT NOT NULL,
        data_sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        next_attempt_at REAL,
        deadline REAL NOT NULL,
        sent_at REAL,
        lease_token TEXT,
        lease_expires_at REAL,
        dkim_domain TEXT,
        dkim_selector TEXT,
        sent_sha256 TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message INTEGER NOT NULL REFERENCES outbox_messages(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        worker TEXT,
        outcome TEXT NOT NULL,
        host TEXT,
        code INTEGER,
        enhanced TEXT,
        text TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        signed_head BLOB,
        signed_full BLOB
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_bodies (
        message INTEGER PRIMARY KEY REFERENCES outbox_messages(id) ON DELETE CASCADE,
        data BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_suppressions (
        brand TEXT NOT NULL,
        email TEXT NOT NULL,
        reason TEXT NOT NULL,
        code INTEGER,
        enhanced TEXT,
        message INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (brand, email)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_idempotency "
    "ON outbox_messages (brand, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_dedupe ON outbox_messages (dedupe_key) "
    "WHERE dedupe_key IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_message_id ON outbox_messages (message_id)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox_messages (next_attempt_at, id) "
    f"WHERE status IN ({sql.DUE_LIST})",
    # SQLite touches only the indexes whose columns an UPDATE changes: this one covers
    # cancellations and is never rewritten after insert. The states have partial
    # indexes (search_indexes.py): one on (status, …) looked cheapest to the planner
    # for every query naming a state and made it walk all sent mail.
    "CREATE INDEX IF NOT EXISTS outbox_domain ON outbox_messages (brand, domain)",
    "CREATE INDEX IF NOT EXISTS outbox_attempts_message ON outbox_attempts (message)",
    # counters kept as things happen (accepted, sent, failed, …, latency buckets), so
    # that monitoring reads a small table, not the whole history
    """CREATE TABLE IF NOT EXISTS outbox_counters (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (brand, event, name)
    )""",
    *status_events.SQLITE_SCHEMA,
    *brand_dns.SQLITE_SCHEMA,
    *webhook_model.SQLITE_SCHEMA,
    *inbound_reports.SQLITE_SCHEMA,
    *search_indexes.SQLITE_SCHEMA,
    *tallies.SQLITE_SCHEMA,
    *sql.backfill_latency_buckets(),
    *sql.backfill_counters(),
    "INSERT INTO outbox_meta (key, value) VALUES ('schema_version', '1') "
    "ON CONFLICT (key) DO NOTHING",
]


_SUPPRESSED = ", EXISTS (SELECT 1 FROM outbox_suppressions s"
assert sql.CLAIM_COLUMNS.count(_SUPPRESSED) == 1 and sql.CLAIM_COLUMNS.endswith(")")
#: the claim's columns without the suppression check (the last), made separately
_CLAIM_COLUMNS = sql.CLAIM_COLUMNS[: sql.CLAIM_COLUMNS.index(_SUPPRESSED)]


def path_from_url(url: str) -> Path:
    """``sqlite:///var/notifier.db`` (relative) or ``sqlite:////abs/notifier.db``."""
    if not url.startswith("sqlite:///"):
        raise StorageError(f"not a SQLite URL: {url!r} (use sqlite:///path/to/notifier.db)")
    return Path(url[len("sqlite:///") :])


class SQLiteOutbox(Outbox):
    kind = "sqlite"

    def __init__(self, path: Path | str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = Path(path)
        self._writer = threading.Lock()  # this process's write transactions, in turn

    def __repr__(self) -> str:
        return f"SQLiteOutbox({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        if str(self.path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create {self.path.parent}: {exc.strerror}") from exc
        conn = sqlite3.connect(
            self.path,
            timeout=self.config.busy_timeout,
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout * 1000)}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a new database (retention.py)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal" and str(self.path) != ":memory:":
                log.warning("SQLite %s: journal_mode is %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _begin(self, conn: Any, write: bool) -> None:
        if not write:
            conn.execute("BEGIN DEFERRED")
            return
        # Writers of this process (intake, claimer, recorder) queue on a lock that hands
        # over the moment it is free; other processes' writers are waited for in steps
        # of at most 2 ms. SQLite's own busy handler sleeps in steps growing to 100 ms
        # whether or not the lock was freed meanwhile: with intake, claims and outcomes
        # taking turns, those sleeps were most of a message's time to inbox.
        if not self._writer.acquire(timeout=self.config.busy_timeout or -1):
            raise sqlite3.OperationalError("database is locked (by this process)")
        self._local.writing = True
        try:
            deadline = time.monotonic() + self.config.busy_timeout
            pause = 0.0002
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                while True:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        return
                    except sqlite3.OperationalError as exc:
                        if "locked" not in str(exc) and "busy" not in str(exc):
                            raise
                        if time.monotonic() >= deadline:
                            raise
                    time.sleep(pause)
                    pause = min(2 * pause, 0.002)
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout * 1000)}")
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        if getattr(self._local, "writing", False):
            self._local.writing = False
            self._writer.release()

    def _commit(self, conn: Any) -> None:
        try:
            conn.execute("COMMIT")
        finally:
            if not conn.in_transaction:
                self._release_writer()

    def _begin_relaxed(self, conn: Any, write: bool) -> None:
        # NORMAL in WAL mode: the commit reaches the WAL file, fsync waits for the next
        # checkpoint. The level cannot change inside a transaction, hence before BEGIN.
        conn.execute("PRAGMA synchronous = NORMAL")
        self._begin(conn, write)

    def _end_relaxed(self, conn: Any) -> None:
        try:
            conn.execute("PRAGMA synchronous = FULL")
        except Exception:  # never leave a relaxed connection behind for accept()
            log.warning("restoring synchronous=FULL failed; dropping the connection")
            self._drop_conn()

    def _rollback(self, conn: Any) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            self._release_writer()

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _translate(self, exc: Exception) -> StorageError:
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return StorageError(
                f"the outbox database {self.path} is locked by another process; try again"
            )
        if "full" in lowered:
            return StorageError(f"the outbox database {self.path} is full (disk or size limit)")
        if "readonly" in lowered or "read-only" in lowered:
            return StorageError(f"the outbox database {self.path} is read-only")
        if "unable to open" in lowered:
            return StorageError(f"cannot open the outbox database {self.path}")
        return StorageError(f"outbox database error ({type(exc).__name__}): {text}")

    def _schema(self, cur: Cursor) -> list[str]:
        return [*SCHEMA, *bodies.sqlite_schema(cur)]

    def _claim_rows(
        self,
        cur: Cursor,
        worker: str,
        limit: int,
        now: float,
        lease_until: float,
        expired: bool,
    ) -> list[tuple[Any, ...]]:
        if expired:
            where, order = "status = 'sending' AND lease_expires_at <= ?", "lease_expires_at"
        else:
            where = f"status IN ({sql.DUE_LIST}) AND next_attempt_at <= ?"
            order = "next_attempt_at, id"
        # BEGIN IMMEDIATE holds the write lock: no other claim runs in between. The
        # suppression check is a second statement: as a subquery of RETURNING, SQLite
        # scanned the whole suppression list once per claimed row.
        rows = cur.execute(
            "UPDATE outbox_messages SET status = 'sending', lease_token = ?, "
            "lease_expires_at = ?, updated_at = ? "
            f"WHERE id IN (SELECT id FROM outbox_messages WHERE {where} ORDER BY {order} "
            f"LIMIT ?) RETURNING {_CLAIM_COLUMNS}, outbox_messages.recipient",
            [worker, lease_until, now, now, limit],
        ).fetchall()
        if not rows:
            return []
        found: set[tuple[str, str]] = set()
        pairs = sorted({(str(r[2]), str(r[-1])) for r in rows})
        for i in range(0, len(pairs), 400):
            chunk = pairs[i : i + 400]
            marks = ", ".join("(?, ?)" for _ in chunk)
            found.update(
                (str(b), str(e))
                for b, e in cur.execute(
                    "SELECT brand, email FROM outbox_suppressions "
                    f"WHERE (brand, email) IN (VALUES {marks})",
                    [v for pair in chunk for v in pair],
                ).fetchall()
            )
        return [(*r[:-1], (str(r[2]), str(r[-1])) in found) for r in rows]
