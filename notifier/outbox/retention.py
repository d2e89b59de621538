"""Retention: messages final for longer than ``NOTIFIER_RETENTION`` are deleted with
their evidence, and the history that grows with them (status events, webhook
deliveries, inbound reports) goes at the same age.

The work is proportional to what is purged: old final messages are found through the
partial index ``outbox_finished`` (updated_at of final messages), history tables are
walked from their oldest id and the walk stops at the first row young enough to keep;
everything goes in chunks, each its own short transaction, so intake never waits long.

The space comes back. SQLite: databases are created with ``auto_vacuum=INCREMENTAL``
and the freed pages are handed back to the file system after a purge (a database from
before that is converted by one ``VACUUM``: at open when small, otherwise by ``notifier
db vacuum``). PostgreSQL: plain DELETE, autovacuum makes the space reusable for new
rows, which is what a store that keeps a steady two years needs (see docs/STORAGE.md
for why bodies are not partitioned by month).
"""

from __future__ import annotations

import logging
import time

from . import sql
from .bodies import Bodies

log = logging.getLogger("notifier.outbox")

#: a SQLite database up to this size is converted to incremental vacuum when opened
AUTO_CONVERT_BYTES = 64 * 1024 * 1024
#: pages handed back per transaction (4 MB with 4 kB pages)
VACUUM_PAGES = 1024
#: a superseded dictionary is kept this long: a process may still compress with it
#: until it next looks for new ones (``bodies.REFRESH``)
DICTIONARY_GRACE = 3600.0
#: final messages older than a cutoff, a chunk at a time: a range of the partial index
#: ``outbox_finished`` (SQLite uses a partial index only for the predicate as written
#: in the index, hence the literal list)
OLD_FINAL = (
    f"SELECT id FROM outbox_messages WHERE status IN ({sql.FINAL_LIST}) AND updated_at < ? LIMIT ?"
)
#: history tables and their time column, purged oldest first by id
HISTORY = (
    ("webhook_deliveries", "created_at"),
    ("outbox_events", "created_at"),
    ("outbox_reports", "received_at"),
)


class Retention(Bodies):
    def purge(self, now: float | None = None, chunk: int = 1000) -> int:
        """Delete final messages (with their bodies, attempts and reports) older than
        the retention period, then the history of the same age, then dictionaries no
        body needs; hand the space back. Returns the number of messages purged."""
        now = self.clock() if now is None else now
        cutoff = now - self.config.retention
        total = 0
        while True:
            with self.transaction() as cur:
                ids = [int(r[0]) for r in cur.execute(OLD_FINAL, [cutoff, chunk]).fetchall()]
                if not ids:
                    break
                marks = ", ".join("?" for _ in ids)
                for table, column in (
                    ("outbox_reports", "message"),
                    ("outbox_attempts", "message"),
                    ("outbox_bodies", "message"),
                    ("outbox_messages", "id"),
                ):
                    cur.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
            total += len(ids)
        history = sum(self._purge_history(t, column, cutoff, chunk) for t, column in HISTORY)
        dictionaries = self._purge_dictionaries(now)
        if total or history or dictionaries:
            log.info(
                "purged %d message(s), %d history row(s), %d body dictionary(ies)",
                total,
                history,
                dictionaries,
            )
            self.reclaim_space()
        return total

    def _purge_history(self, table: str, column: str, cutoff: float, chunk: int) -> int:
        """Delete rows of ``table`` older than ``cutoff``, oldest id first: ids grow
        with time, so the walk stops at the first row to keep (no index on the time)."""
        total = 0
        while True:
            with self.transaction() as cur:
                rows = cur.execute(
                    f"SELECT id, {column} FROM {table} ORDER BY id LIMIT ?", [chunk]
                ).fetchall()
                old = [int(i) for i, at in rows if float(at) < cutoff]
                if old:
                    marks = ", ".join("?" for _ in old)
                    cur.execute(f"DELETE FROM {table} WHERE id IN ({marks})", old)
            total += len(old)
            if len(old) < len(rows) or len(rows) < chunk:
                return total

    def _purge_dictionaries(self, now: float) -> int:
        """Delete dictionaries no body uses that a newer one of their brand replaced
        long enough ago; a brand's newest is kept whatever its age."""
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM outbox_body_dicts WHERE EXISTS (SELECT 1 FROM outbox_body_dicts n "
                "WHERE n.brand = outbox_body_dicts.brand AND n.id > outbox_body_dicts.id "
                "AND n.created_at < ?) AND NOT EXISTS (SELECT 1 FROM outbox_bodies b "
                "WHERE b.dictionary = outbox_body_dicts.id)",
                [now - DICTIONARY_GRACE],
            )
            return cur.rowcount

    def reclaim_space(self) -> int:
        """SQLite: hand free pages back to the file system, ``VACUUM_PAGES`` per
        transaction; returns how many (0 on PostgreSQL, or on a SQLite database not
        yet converted: see :meth:`vacuum`)."""
        if self.kind != "sqlite":
            return 0
        freed = 0
        while True:
            with self.transaction() as cur:
                mode = cur.execute("PRAGMA auto_vacuum").fetchone()
                free = cur.execute("PRAGMA freelist_count").fetchone()
                if not mode or int(mode[0]) != 2 or not free or not int(free[0]):
                    return freed
                pages = min(int(free[0]), VACUUM_PAGES)
                # each row of the result is a page freed: it runs as far as it is read
                cur.execute(f"PRAGMA incremental_vacuum({pages})").fetchall()
            freed += pages

    def vacuum(self) -> dict[str, float]:
        """Rewrite the database compactly. SQLite: switches an older database to
        incremental vacuum (one full copy of the file; needs free disk of its size and
        takes the write lock throughout). PostgreSQL: ``VACUUM (ANALYZE)`` of the
        outbox tables (space reusable; the files do not shrink)."""
        started = time.monotonic()
        before = self.database_bytes()
        conn = self._conn()
        try:
            if self.kind == "sqlite":
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                conn.autocommit = True
                try:
                    for table in _TABLES:
                        conn.execute(f"VACUUM (ANALYZE) {table}")
                finally:
                    conn.autocommit = False
        except Exception as exc:
            if self._is_driver_error(exc):
                raise self._translate(exc) from exc
            raise
        return {
            "bytes_before": before,
            "bytes_after": self.database_bytes(),
            "seconds": round(time.monotonic() - started, 3),
        }

    def database_bytes(self) -> int:
        """Bytes the outbox occupies: SQLite pages in use and free (after a WAL
        checkpoint, the file's size); PostgreSQL, its tables with indexes and TOAST."""
        with self.transaction(write=False) as cur:
            if self.kind == "sqlite":
                count = cur.execute("PRAGMA page_count").fetchone()
                size = cur.execute("PRAGMA page_size").fetchone()
                return int(count[0]) * int(size[0]) if count and size else 0
            total = 0
            for table in _TABLES:
                row = cur.execute(
                    "SELECT COALESCE(pg_total_relation_size(to_regclass(?)), 0)", [table]
                ).fetchone()
                total += int(row[0]) if row else 0
            return total

    def init_schema(self) -> None:
        super().init_schema()
        if self.kind == "sqlite":
            self._convert_small_sqlite()

    def _convert_small_sqlite(self) -> None:
        """A database from before incremental vacuum: converted now if that is quick
        (one VACUUM of a small file), else a warning naming ``notifier db vacuum``."""
        with self.transaction(write=False) as cur:
            mode = cur.execute("PRAGMA auto_vacuum").fetchone()
        if not mode or int(mode[0]) == 2:
            return
        size = self.database_bytes()
        if size > AUTO_CONVERT_BYTES:
            log.warning(
                "the outbox database (%d MB) does not return purged space to the file "
                "system; run `notifier db vacuum` once at a quiet time",
                size // 2**20,
            )
            return
        try:
            self.vacuum()
        except Exception:  # another process holds it: the next open tries again
            log.info("converting the outbox to incremental vacuum failed", exc_info=True)


_TABLES = (
    "outbox_messages",
    "outbox_bodies",
    "outbox_body_dicts",
    "outbox_attempts",
    "outbox_suppressions",
    "outbox_counters",
    "outbox_events",
    "outbox_reports",
    "outbox_meta",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "webhook_counters",
    "brand_dns",
    "brand_dns_checks",
)
