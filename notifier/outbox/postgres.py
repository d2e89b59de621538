"""The shared outbox: PostgreSQL (``NOTIFIER_DATABASE_URL=postgresql://…``) via psycopg 3.

Several worker processes, on several machines, claim from one table with
``FOR UPDATE SKIP LOCKED``: each claim locks only rows nobody else has locked, so two
workers never get the same message and neither waits for the other. Transactions run
at READ COMMITTED; a concurrent duplicate insert waits on the unique index and then
finds the committed row, so an idempotency key yields one message under any race.
Lock waits are bounded (``lock_timeout``) so intake answers 503 instead of hanging.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, cast

from ..errors import StorageError
from . import bodies, brand_dns, search_indexes, sql, tallies, webhook_model
from . import events as status_events
from . import feedback as inbound_reports
from .base import Cursor
from .changes import COLUMNS
from .leases import OutcomeRow
from .store import Outbox

log = logging.getLogger("notifier.outbox")

try:  # the driver is an optional dependency (pip install notifier[postgres])
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

SCHEMA = [
    # Serialise concurrent schema creation by several processes starting at once.
    "SELECT pg_advisory_xact_lock(7270701)",
    """CREATE TABLE IF NOT EXISTS outbox_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        brand TEXT NOT NULL,
        sender_brand TEXT NOT NULL,
        sign_brand TEXT NOT NULL,
        event TEXT NOT NULL,
        mandatory BOOLEAN NOT NULL,
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
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION,
        deadline DOUBLE PRECISION NOT NULL,
        sent_at DOUBLE PRECISION,
        lease_token TEXT,
        lease_expires_at DOUBLE PRECISION,
        dkim_domain TEXT,
        dkim_selector TEXT,
        sent_sha256 TEXT,
        possible_duplicate BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message BIGINT NOT NULL REFERENCES outbox_messages(id) ON DELETE CASCADE,
        at DOUBLE PRECISION NOT NULL,
        worker TEXT,
        outcome TEXT NOT NULL,
        host TEXT,
        code INTEGER,
        enhanced TEXT,
        text TEXT,
        possible_duplicate BOOLEAN NOT NULL DEFAULT FALSE,
        sha256 TEXT,
        signed_head BYTEA,
        signed_full BYTEA
    )""",
    # Bodies are written once and kept for the retention period: lz4 compresses them
    # several times faster than the default pglz (see _schema).
    """CREATE TABLE IF NOT EXISTS outbox_bodies (
        message BIGINT PRIMARY KEY REFERENCES outbox_messages(id) ON DELETE CASCADE,
        data BYTEA {compression} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_suppressions (
        brand TEXT NOT NULL,
        email TEXT NOT NULL,
        reason TEXT NOT NULL,
        code INTEGER,
        enhanced TEXT,
        message BIGINT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (brand, email)
    )""",
    # Every state change is a non-HOT update (status is indexed), which adds an entry to
    # every index whose predicate the new row version satisfies: the indexes are partial
    # so that each transition touches only the few that matter.
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_idempotency "
    "ON outbox_messages (brand, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_dedupe ON outbox_messages (dedupe_key) "
    "WHERE dedupe_key IS NOT NULL",
    # the insert path maps RETURNING rows back by Message-ID: it must be unique
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_message_id ON outbox_messages (message_id)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox_messages (next_attempt_at, id) "
    f"WHERE status IN ({sql.DUE_LIST})",
    "CREATE INDEX IF NOT EXISTS outbox_sending ON outbox_messages (lease_expires_at) "
    "WHERE status = 'sending'",
    "CREATE INDEX IF NOT EXISTS outbox_pending_domain ON outbox_messages (brand, domain) "
    f"WHERE status IN ({sql.CANCELLABLE_LIST})",
    "CREATE INDEX IF NOT EXISTS outbox_held ON outbox_messages (sender_brand) "
    "WHERE status = 'held'",
    "CREATE INDEX IF NOT EXISTS outbox_finished ON outbox_messages (updated_at) "
    f"WHERE status IN ({sql.FINAL_LIST})",
    "CREATE INDEX IF NOT EXISTS outbox_attempts_message ON outbox_attempts (message)",
    # counters kept as things happen (accepted, sent, failed, …, latency buckets), so
    # that monitoring reads a small table, not the whole history
    """CREATE TABLE IF NOT EXISTS outbox_counters (
        brand TEXT NOT NULL,
        event TEXT NOT NULL,
        name TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (brand, event, name)
    )""",
    *status_events.POSTGRES_SCHEMA,
    *brand_dns.POSTGRES_SCHEMA,
    *webhook_model.POSTGRES_SCHEMA,
    *inbound_reports.POSTGRES_SCHEMA,
    *bodies.POSTGRES_SCHEMA,
    *search_indexes.POSTGRES_SCHEMA,
    *tallies.POSTGRES_SCHEMA,
    *sql.backfill_latency_buckets(),
    *sql.backfill_counters(),
    "INSERT INTO outbox_meta (key, value) VALUES ('schema_version', '1') "
    "ON CONFLICT (key) DO NOTHING",
]

_PLACEHOLDER = re.compile(r"\?")
#: rows in one multi-row INSERT at most (and 65,535 parameters: the protocol's limit)
MULTIROW_MAX = 500
_INSERT = re.compile(r"\s*INSERT INTO \w+ \(([^()]*)\) VALUES (\([^()]*\))(.*)", re.S | re.I)
_CONFLICT = re.compile(r"\s*ON CONFLICT\s*(?:\(([^()]*)\))?\s*DO (UPDATE|NOTHING)\b", re.S | re.I)
_ITEM = re.compile(r"\?|'[^',]*'|-?\d+(?:\.\d+)?|NULL|TRUE|FALSE", re.I)
_UNPLANNED: Any = object()
#: one OutcomeRow, typed (a VALUES list in FROM has no column types to take)
_OUTCOME_VALUES = (
    "(?::text, ?::text, ?::float8, ?::int, ?::float8, ?::float8, ?::bool, ?::text, ?::text, "
    "?::text, ?::bool, ?::bigint)"
)
_OUTCOMES = (
    "UPDATE outbox_messages AS m SET status = v.status, reason = v.reason, "
    "next_attempt_at = v.next_attempt_at, attempts = m.attempts + v.tries, "
    "sent_at = v.sent_at, updated_at = v.updated_at, lease_token = NULL, "
    "lease_expires_at = NULL, "
    "dkim_domain = CASE WHEN v.signed THEN v.dkim_domain ELSE m.dkim_domain END, "
    "dkim_selector = CASE WHEN v.signed THEN v.dkim_selector ELSE m.dkim_selector END, "
    "sent_sha256 = CASE WHEN v.signed THEN v.sent_sha256 ELSE m.sent_sha256 END, "
    "possible_duplicate = (m.possible_duplicate OR v.possible_duplicate) "
    "FROM (VALUES {values}) AS v(status, reason, next_attempt_at, tries, sent_at, "
    "updated_at, signed, dkim_domain, dkim_selector, sent_sha256, possible_duplicate, id) "
    "WHERE m.id = v.id AND m.lease_token = ? AND m.status = 'sending' "
    "RETURNING " + ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
)


@functools.lru_cache(maxsize=256)
def _outcomes_statement(n: int) -> str:
    return _OUTCOMES.format(values=", ".join([_OUTCOME_VALUES] * n))


@dataclass(frozen=True)
class MultiRow:
    """How one ``INSERT INTO t (cols) VALUES (…)`` statement takes many rows at once."""

    head: str  # up to and including VALUES
    row: str  # one row's ``(?, ?, 'x', ?)``
    tail: str  # ON CONFLICT … and the rest
    width: int  # parameters a row
    #: positions (among a row's parameters) of the ON CONFLICT … DO UPDATE key, which
    #: must not repeat within one statement; None when rows may repeat keys
    key: tuple[int, ...] | None

    @classmethod
    def of(cls, sql: str) -> MultiRow | None:
        match = _INSERT.fullmatch(sql)
        if match is None:
            return None
        columns = [c.strip().lower() for c in match.group(1).split(",")]
        row = match.group(2)
        items = [i.strip() for i in row[1:-1].split(",")]
        tail = match.group(3)
        if len(items) != len(columns) or "?" in tail or not all(map(_ITEM.fullmatch, items)):
            return None  # a value other than ? or a plain literal, parameters after VALUES
        key: tuple[int, ...] | None = None
        if tail.strip():
            conflict = _CONFLICT.match(tail)
            if conflict is None or "RETURNING" in tail.upper():
                return None
            if conflict.group(2).upper() == "UPDATE":
                if not conflict.group(1):
                    return None
                params = [i for i, item in enumerate(items) if item == "?"]
                try:
                    wanted = [
                        columns.index(c.strip().lower()) for c in conflict.group(1).split(",")
                    ]
                except ValueError:
                    return None
                key = tuple(params.index(i) for i in wanted if i in params)
        head = sql[: match.start(2)]
        return cls(head, row, tail, row.count("?"), key)

    def fits(self, rows: list[tuple[Any, ...]]) -> bool:
        if self.key is None:
            return True
        keys = {tuple(r[i] for i in self.key) for r in rows}
        return len(keys) == len(rows)

    def statement(self, n: int) -> str:
        return self.head + ", ".join([self.row] * n) + self.tail


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(url: str) -> str:
    return _PASSWORD.sub(r"\1***@", url)


class PostgresOutbox(Outbox):
    kind = "postgres"

    def __init__(
        self,
        url: str,
        *args: Any,
        lock_timeout: float = 10.0,
        application_name: str = "notifier",
        **kwargs: Any,
    ) -> None:
        if psycopg is None:
            raise StorageError(
                "PostgreSQL needs the psycopg driver: pip install 'notifier[postgres]'"
            )
        super().__init__(*args, **kwargs)
        self.url = url
        self.lock_timeout = lock_timeout
        self.application_name = application_name
        self._multirow: dict[str, MultiRow | None] = {}

    def __repr__(self) -> str:
        return f"PostgresOutbox({redact(self.url)!r})"

    def _connect(self) -> Any:
        assert psycopg is not None
        from psycopg.conninfo import conninfo_to_dict

        params: dict[str, Any] = dict(conninfo_to_dict(self.url))
        # Keep any options of the URL (e.g. ?options=-csearch_path%3Dnotifier).
        options = str(params.get("options") or "")
        params["options"] = f"{options} -c lock_timeout={int(self.lock_timeout * 1000)}".strip()
        params.setdefault("connect_timeout", 10)
        params.setdefault("application_name", self.application_name)
        # $1, $2 … placeholders (see _sql): psycopg then sends the query as it is
        return psycopg.connect(autocommit=False, cursor_factory=psycopg.RawCursor, **params)

    def _sql(self, sql: str) -> str:
        """The statement with PostgreSQL's own ``$n`` placeholders for ``?``, converted
        once per statement here. With ``%s``, psycopg parses every statement of more
        than 50 parameters (a group commit's multi-row INSERT) anew on every execution:
        a tenth of the API process's CPU at 300 events a second."""
        cached = self._sql_cache.get(sql)
        if cached is None:
            numbers = itertools.count(1)
            cached = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)
            self._sql_cache[sql] = cached
        return cached

    def _many(self, raw: Any, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        """An ``INSERT … VALUES (…)`` for many rows as one statement of many rows (in
        chunks of at most ``MULTIROW_MAX`` rows); anything else, and an ``ON CONFLICT …
        DO UPDATE`` whose rows repeat a conflict key, once per row. Recording a
        worker's outcomes wrote some 20 statements a commit, each a round of psycopg's
        Python and of the server's statement machinery; this is 4-5."""
        rows = [tuple(p) for p in seq]
        plan = self._multirow.get(sql, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._multirow[sql] = MultiRow.of(sql)
        if plan is None or len(rows) < 2 or not plan.fits(rows):
            raw.executemany(self._sql(sql), rows)
            return
        step = max(1, min(MULTIROW_MAX, 65535 // max(1, plan.width)))
        for i in range(0, len(rows), step):
            chunk = rows[i : i + step]
            raw.execute(self._sql(plan.statement(len(chunk))), [v for r in chunk for v in r])

    def _update_outcomes(
        self, cur: Cursor, worker: str, rows: Sequence[OutcomeRow]
    ) -> list[list[tuple[Any, ...]]]:
        """All outcomes in one ``UPDATE … FROM (VALUES …)`` (in id order), where the
        generic form runs one statement per outcome."""
        if len(rows) < 2 or len({r.id for r in rows}) != len(rows):
            return super()._update_outcomes(cur, worker, rows)
        ordered = sorted(rows, key=lambda r: r.id)
        statement = _outcomes_statement(len(ordered))
        params = [value for r in ordered for value in r]
        changed = {int(row[0]): row for row in cur.execute(statement, [*params, worker]).fetchall()}
        return [[changed[r.id]] if r.id in changed else [] for r in rows]

    def _begin(self, conn: Any, write: bool) -> None:
        pass  # psycopg opens a transaction with the first statement

    @contextmanager
    def _alone(self, conn: Any) -> Iterator[None]:
        """Autocommit for the statement, unless a transaction of this thread is open:
        one round trip, where psycopg would send BEGIN, the statement and COMMIT."""
        assert psycopg is not None
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield  # a statement of that transaction
            return
        conn.autocommit = True
        try:
            yield
        finally:
            if not conn.closed:
                conn.autocommit = False

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _begin_relaxed(self, conn: Any, write: bool) -> None:
        # for this transaction only: COMMIT returns once the WAL is written, not flushed
        self._begin(conn, write)
        conn.execute("SET LOCAL synchronous_commit = off")

    def _pipeline(self, cur: Cursor) -> AbstractContextManager[None]:
        return cast(AbstractContextManager[None], cur.raw.connection.pipeline())

    def _rollback(self, conn: Any) -> None:
        if not conn.closed:
            conn.rollback()

    def _broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return psycopg is not None and isinstance(exc, psycopg.Error)

    def _translate(self, exc: Exception) -> StorageError:
        assert psycopg is not None
        name = type(exc).__name__
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        text = redact(text)
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return StorageError("the outbox database is busy (lock wait timed out); try again")
        if isinstance(exc, psycopg.OperationalError):
            return StorageError(f"the outbox database is unavailable: {text}")
        if isinstance(exc, psycopg.errors.DiskFull):
            return StorageError("the outbox database is out of disk space")
        if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
            return StorageError(f"outbox transaction conflict ({name}); try again")
        return StorageError(f"outbox database error ({name}): {text}")

    def _schema(self, cur: Cursor) -> list[str]:
        row = cur.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
        compression = "COMPRESSION lz4" if row and row[0] else ""
        return [s.replace("{compression}", compression) for s in SCHEMA]

    def _many_returning(self, raw: Any, sql: str, seq: Any) -> list[list[tuple[Any, ...]]]:
        if not seq:
            return []
        # One pipelined round trip for the whole batch instead of one per row.
        raw.executemany(sql, [tuple(p) for p in seq], returning=True)
        out: list[list[tuple[Any, ...]]] = []
        while True:
            out.append(list(raw.fetchall()))
            if not raw.nextset():
                break
        return out

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
        return cur.execute(
            "WITH picked AS (SELECT id AS picked_id FROM outbox_messages "
            f"WHERE {where} ORDER BY {order} LIMIT ? FOR UPDATE SKIP LOCKED) "
            "UPDATE outbox_messages SET status = 'sending', lease_token = ?, "
            "lease_expires_at = ?, updated_at = ? FROM picked "
            f"WHERE outbox_messages.id = picked.picked_id RETURNING {sql.CLAIM_COLUMNS}",
            [now, limit, worker, lease_until, now],
        ).fetchall()
