"""The store's foundation: connections (one per thread), transactions, and the hooks a
backend fills in (``sqlite.py``, ``postgres.py``): connecting, the schema, the claim
statement, and the one place driver errors become :class:`StorageError`."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Self

from ..errors import StorageError
from . import events as status_events
from .events import StatusEvent
from .model import OutboxConfig

log = logging.getLogger("notifier.outbox")


class Cursor:
    """A DB-API cursor taking ``?`` placeholders on every backend."""

    def __init__(self, outbox: StoreBase, raw: Any) -> None:
        self._outbox = outbox
        self.raw = raw
        #: run once the transaction has committed (never after a rollback)
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self.raw.execute(self._outbox._sql(sql), tuple(params))
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.raw.fetchone()
        return row

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.raw.fetchall()
        return rows

    @property
    def rowcount(self) -> int:
        count: int = self.raw.rowcount
        return count

    def many_returning(self, sql: str, seq: Sequence[Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
        """Run ``sql`` once per parameter set; the rows each run returned."""
        return self._outbox._many_returning(self.raw, self._outbox._sql(sql), seq)

    def many(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per parameter set (on PostgreSQL an ``INSERT … VALUES``
        becomes one statement of many rows: see ``PostgresOutbox._many``)."""
        if seq:
            self._outbox._many(self.raw, sql, seq)


class StoreBase(ABC):
    """Connections and transactions; thread-safe (each thread uses its own connection).
    ``clock`` returns Unix seconds (tests pass a fake one to move time without sleeping)."""

    #: "sqlite" or "postgres"
    kind: str = ""

    def __init__(
        self,
        config: OutboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or OutboxConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}

    # --- backend hooks --------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new driver connection."""

    @abstractmethod
    def _begin(self, conn: Any, write: bool) -> None: ...

    @abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def _translate(self, exc: Exception) -> StorageError:
        """A driver error → StorageError (the one place driver errors are translated)."""

    @abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def _schema(self, cur: Cursor) -> list[str]:
        """The DDL statements, run in one transaction on ``cur``."""

    @abstractmethod
    def _claim_rows(
        self,
        cur: Cursor,
        worker: str,
        limit: int,
        now: float,
        lease_until: float,
        expired: bool,
    ) -> list[tuple[Any, ...]]:
        """Mark up to ``limit`` due messages (or, with ``expired``, messages whose lease
        ran out) ``sending`` for ``worker``; return ``sql.CLAIM_COLUMNS``."""

    def _sql(self, sql: str) -> str:
        return sql

    def _many(self, raw: Any, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        raw.executemany(self._sql(sql), [tuple(p) for p in seq])

    def _many_returning(
        self, raw: Any, sql: str, seq: Sequence[Sequence[Any]]
    ) -> list[list[tuple[Any, ...]]]:
        out = []
        for params in seq:
            raw.execute(sql, tuple(params))
            out.append(list(raw.fetchall()))
        return out

    # --- connections and transactions ---------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except Exception as exc:
                if self._is_driver_error(exc):
                    raise self._translate(exc) from exc
                raise
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._all_lock:
                if conn in self._all:
                    self._all.remove(conn)
            try:
                conn.close()
            except Exception:
                log.debug("closing a broken connection failed", exc_info=True)

    @contextmanager
    def transaction(self, write: bool = True, *, durable: bool = True) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back on any error.
        Driver errors leave as :class:`StorageError` (``raise … from``).

        ``durable=False``: the commit returns before it is flushed to disk. It survives
        the process that made it (``kill -9``) but not a crash of the database machine;
        only for records whose loss means work done again, never for accepted mail.

        ``cur.after_commit``: what to do once the commit is done (e.g. wake workers)."""
        conn = self._conn()
        try:
            (self._begin if durable else self._begin_relaxed)(conn, write)
            cur = Cursor(self, conn.cursor())
            yield cur
            self._commit(conn)
        except BaseException as exc:
            try:
                self._rollback(conn)
            except Exception:
                log.warning("rollback failed; dropping the connection", exc_info=True)
                self._drop_conn()
            if isinstance(exc, Exception) and self._is_driver_error(exc):
                if self._broken(conn):
                    self._drop_conn()
                raise self._translate(exc) from exc
            raise
        finally:
            if not durable:
                self._end_relaxed(conn)
        for callback in cur.after_commit:
            callback()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, which needs no transaction of its own (a
        statement sees one snapshot): PostgreSQL runs it without BEGIN and COMMIT. In a
        transaction of this thread, it is a statement of that transaction."""
        conn = self._conn()
        try:
            with self._alone(conn):
                return list(Cursor(self, conn.cursor()).execute(sql, params).fetchall())
        except Exception as exc:
            if not self._is_driver_error(exc):
                raise
            if self._broken(conn):
                self._drop_conn()
            raise self._translate(exc) from exc

    def _alone(self, conn: Any) -> AbstractContextManager[None]:
        """Around a statement that :meth:`read` runs outside :meth:`transaction`: a
        connection between transactions is in autocommit mode (SQLite's is, with
        ``isolation_level=None``: this module issues BEGIN and COMMIT itself)."""
        return nullcontext()

    def _begin_relaxed(self, conn: Any, write: bool) -> None:
        """Begin a transaction whose commit need not wait for the disk (a backend that
        cannot relax just begins a durable one)."""
        self._begin(conn, write)

    def _end_relaxed(self, conn: Any) -> None:
        """After a relaxed transaction: make the connection durable again (or drop it)."""
        return None

    def _broken(self, conn: Any) -> bool:
        return False

    def _pipeline(self, cur: Cursor) -> AbstractContextManager[None]:
        """Send the statements of this block without waiting for each answer where the
        driver can (PostgreSQL's pipeline mode): a reading statement still waits."""
        return nullcontext()

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                log.debug("close failed", exc_info=True)
        self._local = threading.local()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes shared by storing and recording -----------------------------------

    def _count(self, cur: Cursor, counts: Mapping[tuple[str, str, str], float]) -> None:
        """Add to the counters. Last in every transaction that calls it, after all its
        message rows are locked, and in key order: on PostgreSQL, two transactions then
        never wait on each other in a cycle."""
        if counts:
            cur.many(
                "INSERT INTO outbox_counters (brand, event, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (brand, event, name) "
                "DO UPDATE SET value = outbox_counters.value + excluded.value",
                [(*key, value) for key, value in sorted(counts.items()) if value],
            )

    def _add_suppressions(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            cur.many(
                "INSERT INTO outbox_suppressions (brand, email, reason, code, enhanced, "
                "message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    def _emit(self, cur: Cursor, events: Sequence[StatusEvent], at: float) -> None:
        """Record status events in the caller's transaction (see :mod:`.events`): every
        state change that a webhook reports calls this on the cursor that makes it."""
        if events:
            cur.many(status_events.INSERT, status_events.rows(events, at))

    def init_schema(self) -> None:
        """Create what is missing. Skipped when the stored fingerprint of the statements
        matches: on a busy PostgreSQL, even ``CREATE INDEX IF NOT EXISTS`` takes table
        locks that can deadlock with the workers' writes (every CLI call, worker and
        API process opens the outbox), and opening stays one small read."""
        with self.transaction(write=False) as cur:
            statements = self._schema(cur)
        fingerprint = hashlib.sha256("\n".join(statements).encode()).hexdigest()
        if self._schema_fingerprint() == fingerprint:
            return
        with self.transaction() as cur:
            for statement in statements:
                cur.execute(statement)
            cur.execute(
                "INSERT INTO outbox_meta (key, value) VALUES ('schema_fingerprint', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [fingerprint],
            )

    def _schema_fingerprint(self) -> str | None:
        try:
            with self.transaction(write=False) as cur:
                row = cur.execute(
                    "SELECT value FROM outbox_meta WHERE key = 'schema_fingerprint'"
                ).fetchone()
        except StorageError:
            return None  # no schema yet (or the database is down: creating it says so)
        return None if row is None else str(row[0])
