"""What DNS checks observed about each brand, and what follows from it.

The brand file keeps what is *declared* (selectors, ``unverified_policy``, and
``dns_verified`` as the state a brand starts in before its first check); this table
keeps what was *observed*: the state, when it was last checked, the consecutive
failures and every record's result as the checks reported them, plus a bounded
history of checks. States::

    unverified ──check ok──▶ verified ──check fails──▶ broken-pending
        ▲                       ▲                          │ │
        │                       └──────check ok────────────┘ │
        └───────────────second failing check─────────────────┘

A check is ``ok`` (every required record ok), ``fail`` (a required record definitely
wrong) or ``unknown`` (DNS did not answer): ``unknown`` is recorded in the history but
never moves the state nor counts as a failure, so a resolver outage cannot take a
brand's own domain away. ``broken-pending`` still signs as the brand: one failing
check may be a reseller's zone edit in progress.

Each change of state is recorded in the transaction that records the check, with a
``brand.dns_changed`` status event, a transition counter (``/metrics``) and a bump of
:meth:`BrandDns.brand_dns_version`, which every process polls cheaply to learn about
it without a restart; becoming verified queues the brand's held mail in the same
transaction. Checks are spread over workers with a lease per brand
(:meth:`BrandDns.claim_dns_checks`), so one worker checks a brand per period.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .base import Cursor, StoreBase
from .events import StatusEvent

State = Literal["unverified", "verified", "broken-pending"]
Outcome = Literal["ok", "fail", "unknown"]
STATES: tuple[State, ...] = ("unverified", "verified", "broken-pending")
#: checks kept per brand in ``brand_dns_checks`` (the newest)
HISTORY = 100
#: consecutive failing checks that take a verified brand back to its unverified policy
FAILURES_TO_FALL_BACK = 2


def signs_as_itself(state: str | None) -> bool | None:
    """Whether a brand in ``state`` sends from and signs for its own domain (None: never
    checked, the brand file decides)."""
    if state is None:
        return None
    return state in ("verified", "broken-pending")


def next_state(previous: State, failures: int, outcome: Outcome) -> tuple[State, int]:
    """The state machine of the module docstring: (state, consecutive failures) after a
    check with ``outcome``, from ``previous`` with ``failures`` so far."""
    if outcome == "unknown":
        return previous, failures
    if outcome == "ok":
        return "verified", 0
    failures += 1
    if previous == "unverified":
        return "unverified", failures
    if failures >= FAILURES_TO_FALL_BACK:
        return "unverified", failures
    return "broken-pending", failures


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class DnsCheckRecord:
    """One recorded check (the history)."""

    checked_at: datetime
    outcome: Outcome
    state: State
    source: str
    #: each record's result as the checks reported it (``id``, ``status``, ``name``, …)
    records: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BrandDnsState:
    """What the stored checks say about one brand (:meth:`BrandDns.brand_dns`)."""

    brand: str
    #: None until the first check is recorded (the brand file's ``dns_verified`` rules)
    state: State | None
    #: ok / fail / unknown of the newest check
    outcome: Outcome | None
    checked_at: datetime | None
    #: when ``state`` last changed
    changed_at: datetime | None
    #: consecutive failing checks (``unknown`` neither counts nor resets)
    failures: int
    next_check_at: datetime | None
    #: each record's result of the newest check, as the checks reported it
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verified(self) -> bool | None:
        """Signs for its own domain (``verified`` or ``broken-pending``); None if never
        checked."""
        return signs_as_itself(self.state)

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "brand": self.brand,
            "state": self.state,
            "verified": self.verified,
            "outcome": self.outcome,
            "checked_at": iso(self.checked_at),
            "changed_at": iso(self.changed_at),
            "failures": self.failures,
            "next_check_at": iso(self.next_check_at),
            "records": self.records,
        }


@dataclass(frozen=True, slots=True)
class DnsRecorded:
    """The result of :meth:`BrandDns.record_dns_check`."""

    previous: State
    now: BrandDnsState
    #: held messages queued because the brand became verified
    released: int = 0

    @property
    def changed(self) -> bool:
        return self.previous != self.now.state


SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS brand_dns (
        brand TEXT PRIMARY KEY,
        state TEXT,
        outcome TEXT,
        checked_at REAL,
        changed_at REAL,
        failures INTEGER NOT NULL DEFAULT 0,
        records TEXT,
        next_check_at REAL NOT NULL,
        lease_owner TEXT,
        lease_until REAL
    )""",
    """CREATE TABLE IF NOT EXISTS brand_dns_checks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        checked_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        records TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS brand_dns_checks_brand ON brand_dns_checks (brand, id)",
    """CREATE TABLE IF NOT EXISTS brand_dns_transitions (
        brand TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (brand, from_state, to_state)
    )""",
    """CREATE TABLE IF NOT EXISTS brand_dns_version (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
    "INSERT INTO brand_dns_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
]

POSTGRES_SCHEMA = [
    s.replace("REAL", "DOUBLE PRECISION")
    .replace(
        "id INTEGER PRIMARY KEY AUTOINCREMENT", "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    .replace("version INTEGER", "version BIGINT")
    .replace("value INTEGER", "value BIGINT")
    for s in SQLITE_SCHEMA
]

_COLUMNS = "brand, state, outcome, checked_at, changed_at, failures, records, next_check_at"


def _state(row: Sequence[Any]) -> BrandDnsState:
    return BrandDnsState(
        brand=str(row[0]),
        state=row[1],
        outcome=row[2],
        checked_at=_dt(row[3]),
        changed_at=_dt(row[4]),
        failures=int(row[5]),
        records=json.loads(row[6]) if row[6] else [],
        next_check_at=_dt(row[7]),
    )


class BrandDns(StoreBase):
    """The observed DNS state of brands: read, claim for a check, record a check."""

    # --- reads ---------------------------------------------------------------------------

    def brand_dns(self, brand: str) -> BrandDnsState | None:
        """The stored state of ``brand`` with each record's result of its newest check;
        None when it was never claimed nor checked. (The preview's "Domain setup" page
        reads this.)"""
        with self.transaction(write=False) as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM brand_dns WHERE brand = ?", [brand]
            ).fetchone()
        return None if row is None else _state(row)

    def brand_dns_all(self) -> dict[str, BrandDnsState]:
        """Every brand's stored state, by brand id."""
        with self.transaction(write=False) as cur:
            rows = cur.execute(f"SELECT {_COLUMNS} FROM brand_dns ORDER BY brand").fetchall()
        return {str(r[0]): _state(r) for r in rows}

    def brand_dns_history(self, brand: str, limit: int = 20) -> list[DnsCheckRecord]:
        """The newest ``limit`` checks of ``brand``, newest first."""
        with self.transaction(write=False) as cur:
            rows = cur.execute(
                "SELECT checked_at, outcome, state, source, records FROM brand_dns_checks "
                "WHERE brand = ? ORDER BY id DESC LIMIT ?",
                [brand, limit],
            ).fetchall()
        return [
            DnsCheckRecord(
                datetime.fromtimestamp(r[0], UTC), r[1], r[2], str(r[3]), json.loads(r[4])
            )
            for r in rows
        ]

    def brand_dns_version(self) -> int:
        """A number that grows whenever any brand's state changes: one small read that
        tells a process whether to read the states again."""
        with self.transaction(write=False) as cur:
            row = cur.execute("SELECT version FROM brand_dns_version WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def brand_dns_states(self) -> tuple[int, dict[str, State]]:
        """The version and the state of every brand checked at least once, read together."""
        with self.transaction(write=False) as cur:
            row = cur.execute("SELECT version FROM brand_dns_version WHERE id = 1").fetchone()
            rows = cur.execute(
                "SELECT brand, state FROM brand_dns WHERE state IS NOT NULL"
            ).fetchall()
        return (int(row[0]) if row else 0), {str(b): s for b, s in rows}

    def brand_dns_metrics(
        self,
    ) -> tuple[dict[str, str], dict[tuple[str, str, str], int]]:
        """For ``/metrics``: each checked brand's state, and the transitions counted
        (brand, from, to) since the database was created."""
        with self.transaction(write=False) as cur:
            states = cur.execute(
                "SELECT brand, state FROM brand_dns WHERE state IS NOT NULL"
            ).fetchall()
            moves = cur.execute(
                "SELECT brand, from_state, to_state, value FROM brand_dns_transitions"
            ).fetchall()
        return (
            {str(b): str(s) for b, s in states},
            {(str(b), str(f), str(t)): int(v) for b, f, t, v in moves},
        )

    # --- the periodic check ---------------------------------------------------------------

    def claim_dns_checks(
        self, owner: str, brands: Iterable[str], *, lease: float, limit: int = 20
    ) -> list[str]:
        """Brands (among ``brands``) due for a check that no one else is checking, leased
        to ``owner`` for ``lease`` seconds; a brand seen for the first time is due now.
        One row at a time in brand order, so that two claiming workers on PostgreSQL
        take row locks in the same order (never a deadlock) and the second one, once the
        first commits, finds the row leased and skips it."""
        wanted = sorted(set(brands))
        if not wanted:
            return []
        now = self.clock()
        with self.transaction() as cur:
            known = {str(r[0]) for r in cur.execute("SELECT brand FROM brand_dns").fetchall()}
            cur.many(
                "INSERT INTO brand_dns (brand, next_check_at) VALUES (?, ?) "
                "ON CONFLICT (brand) DO NOTHING",
                [(b, now) for b in wanted if b not in known],
            )
            due = [
                str(r[0])
                for r in cur.execute(
                    "SELECT brand FROM brand_dns WHERE next_check_at <= ? "
                    "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY brand",
                    [now, now],
                ).fetchall()
                if str(r[0]) in wanted
            ]
            claimed: list[str] = []
            for brand in due[:limit]:
                row = cur.execute(
                    "UPDATE brand_dns SET lease_owner = ?, lease_until = ? WHERE brand = ? "
                    "AND next_check_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                    "RETURNING brand",
                    [owner, now + lease, brand, now, now],
                ).fetchone()
                if row is not None:
                    claimed.append(brand)
        return claimed

    def release_dns_claim(self, owner: str, brand: str) -> None:
        """Give a claimed brand back unchecked (the check could not run at all)."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE brand_dns SET lease_owner = NULL, lease_until = NULL "
                "WHERE brand = ? AND lease_owner = ?",
                [brand, owner],
            )

    # --- recording a check ------------------------------------------------------------------

    def record_dns_check(
        self,
        brand: str,
        outcome: Outcome,
        records: Sequence[Mapping[str, Any]],
        *,
        initial: State,
        next_check_in: float,
        source: str,
        owner: str | None = None,
    ) -> DnsRecorded:
        """Record one check of ``brand`` and apply what follows, in one transaction.

        ``initial`` is the state before the first check (from the brand file);
        ``next_check_in`` seconds until the next periodic check; ``source`` says who
        checked (``worker …``, ``cli``, ``api``); ``owner`` releases that worker's claim.
        """
        now = self.clock()
        doc = json.dumps(list(records), separators=(",", ":"), sort_keys=True)
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO brand_dns (brand, next_check_at) VALUES (?, ?) "
                "ON CONFLICT (brand) DO NOTHING",
                [brand, now],
            )
            # an UPDATE first: on PostgreSQL it locks the row, so concurrent recorders of
            # one brand run one after the other and each sees the other's outcome
            row = cur.execute(
                "UPDATE brand_dns SET checked_at = ? WHERE brand = ? RETURNING state, failures",
                [now, brand],
            ).fetchone()
            assert row is not None
            stored: State | None = row[0]
            previous: State = stored or initial
            state, failures = next_state(previous, int(row[1]), outcome)
            lease_clause = ", lease_owner = NULL, lease_until = NULL" if owner else ""
            cur.execute(
                "UPDATE brand_dns SET state = ?, outcome = ?, failures = ?, records = ?, "
                "next_check_at = ?, changed_at = CASE WHEN state IS NULL OR state <> ? "
                f"THEN ? ELSE changed_at END{lease_clause} WHERE brand = ?",
                [state, outcome, failures, doc, now + next_check_in, state, now, brand],
            )
            cur.execute(
                "INSERT INTO brand_dns_checks (brand, checked_at, outcome, state, source, "
                "records) VALUES (?, ?, ?, ?, ?, ?)",
                [brand, now, outcome, state, source, doc],
            )
            self._trim_history(cur, brand)
            released = 0
            if stored != state:  # what processes see changed (first check included)
                cur.execute("UPDATE brand_dns_version SET version = version + 1 WHERE id = 1")
            if previous != state:
                released = self._transition(cur, brand, previous, state, now, list(records))
            final = cur.execute(
                f"SELECT {_COLUMNS} FROM brand_dns WHERE brand = ?", [brand]
            ).fetchone()
        assert final is not None
        return DnsRecorded(previous, _state(final), released)

    def _trim_history(self, cur: Cursor, brand: str) -> None:
        row = cur.execute(
            "SELECT id FROM brand_dns_checks WHERE brand = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            [brand, HISTORY],
        ).fetchone()
        if row is not None:
            cur.execute("DELETE FROM brand_dns_checks WHERE brand = ? AND id <= ?", [brand, row[0]])

    def _transition(
        self,
        cur: Cursor,
        brand: str,
        previous: State,
        state: State,
        now: float,
        records: list[Mapping[str, Any]],
    ) -> int:
        """The consequences of a change of state, in the recording transaction: the
        status event, the counter, and held mail queued when the brand became verified
        (composed for its own From, it is signed with its own key now)."""
        released = 0
        if state == "verified" and previous == "unverified":
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', reason = NULL, "
                "next_attempt_at = ?, deadline = ? + (deadline - created_at), updated_at = ? "
                "WHERE status = 'held' AND sender_brand = ?",
                [now, now, now, brand],
            )
            released = cur.rowcount
        cur.execute(
            "INSERT INTO brand_dns_transitions (brand, from_state, to_state, value) "
            "VALUES (?, ?, ?, 1) ON CONFLICT (brand, from_state, to_state) "
            "DO UPDATE SET value = brand_dns_transitions.value + 1",
            [brand, previous, state],
        )
        checked_at = datetime.fromtimestamp(now, UTC).isoformat()
        data = {
            "brand": brand,
            "from": previous,
            "to": state,
            "verified": bool(signs_as_itself(state)),
            "checked_at": checked_at,
            "records": records,
            "released": released,
        }
        self._emit(cur, [StatusEvent("brand.dns_changed", brand, data)], now)
        return released


__all__ = [
    "FAILURES_TO_FALL_BACK",
    "HISTORY",
    "STATES",
    "BrandDns",
    "BrandDnsState",
    "DnsCheckRecord",
    "DnsRecorded",
    "Outcome",
    "State",
    "next_state",
    "signs_as_itself",
]
