"""Issue 13: reads that stay flat as the history grows. Tallies kept by the database
(every path that changes a state is counted), searches by domain, the retry window,
and plans that go through an index instead of the history."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Settings
from notifier.delivery.transport import AttemptResult
from notifier.errors import ValidationError
from notifier.outbox import Outbox, Status, open_outbox
from notifier.outbox.model import DAY, LIVE, Delivery
from tests.conftest import postgres_schema
from tests.test_outbox import Clock, raw_event, reminder


def counted(box: Any) -> dict[str, int]:
    """Messages per state, counted from the rows themselves."""
    with box.transaction(write=False) as cur:
        rows = cur.execute("SELECT status, COUNT(*) FROM outbox_messages GROUP BY status")
        found = {str(s): int(n) for s, n in rows.fetchall()}
    return {str(s): found.get(str(s), 0) for s in Status}


def fail_all(box: Any, ids: list[int]) -> None:
    claims = box.claim("w", len(ids))
    box.complete(
        "w",
        [
            Delivery(
                id=c.id,
                status=Status.FAILED,
                reason="550 5.1.1 no such user",
                attempt=AttemptResult("permanent", "mx", 550, "5.1.1", "no such user"),
                suppress=True,
                rcpt_to=c.rcpt_to,
                brand=c.brand,
            )
            for c in claims
        ],
    )


def test_tallies_follow_every_state_change(box: Any, clock: Clock) -> None:
    """Accept, hold, claim, record, cancel, retry, release, suppress, purge: the stats
    and metrics read the tallies and always agree with the rows."""
    box.accept_batch([reminder(i, to=f"u{i}@example.fi") for i in range(6)])
    box.accept(raw_event("domain.nameservers_changed", brand="kustwebb"))  # held (DNS)
    assert box.stats()["by_status"] == counted(box)
    fail_all(box, [])  # nothing to do
    claims = box.claim("w", 3)
    box.release("w", [claims[0].id])
    box.complete(
        "w",
        [
            Delivery(
                id=claims[1].id,
                status=Status.FAILED,
                reason="550 5.1.1",
                attempt=AttemptResult("permanent", "mx", 550, "5.1.1", "no such user"),
                suppress=True,
                rcpt_to=claims[1].rcpt_to,
                brand=claims[1].brand,
            )
        ],
    )
    assert box.stats()["by_status"] == counted(box)
    box.accept(reminder(99, to="u99@example.fi", domain="late.fi"))
    box.accept(raw_event("domain.renewed", domain="late.fi"))  # cancels the reminder
    assert box.retry_failed() == 1
    box.suppress("acme", "x@example.fi", "manual")
    box.suppress("acme", "x@example.fi", "again")  # already there: counted once
    stats = box.stats()
    assert stats["by_status"] == counted(box)
    assert stats["by_status"]["cancelled"] == 1
    assert stats["total"] == sum(counted(box).values())
    assert stats["suppressed_addresses"] == 2
    assert box.metrics().suppressed == {"acme": 2}
    live = box.metrics().live
    assert {k[2] for k in live} <= {str(s) for s in LIVE}
    assert sum(live.values()) == sum(counted(box)[str(s)] for s in LIVE)
    assert box.unsuppress("acme", "x@example.fi")
    assert box.stats()["suppressed_addresses"] == 1
    with box.transaction() as cur:  # a hand-written change is counted too
        cur.execute("UPDATE outbox_messages SET status = 'sent' WHERE status = 'queued'")
        cur.execute("DELETE FROM outbox_bodies")
        cur.execute("DELETE FROM outbox_attempts")
        cur.execute("DELETE FROM outbox_messages WHERE status = 'cancelled'")
    assert box.stats()["by_status"] == counted(box)


def test_due_counts_queued_and_deferred_due(box: Any, clock: Clock) -> None:
    box.accept_batch([reminder(i) for i in range(3)])
    claims = box.claim("w", 1)
    box.complete(
        "w",
        [
            Delivery(
                id=claims[0].id,
                status=Status.DEFERRED,
                next_attempt_at=clock.now + 600,
                attempt=AttemptResult("transient", "mx", 451, "4.7.1", "later"),
            )
        ],
    )
    clock.advance(60)
    stats = box.stats()
    assert stats["due"] == 2 and stats["oldest_due_age_s"] == 60.0
    assert stats["next_deferred_at"] is not None
    clock.advance(600)
    assert box.stats()["due"] == 3


def test_retry_failed_takes_a_window(box: Any, clock: Clock) -> None:
    box.accept_batch([reminder(i, to=f"old{i}@example.fi") for i in range(2)])
    fail_all(box, [1, 2])
    clock.advance(10 * DAY)
    box.accept(reminder(7, to="new@example.fi"))
    fail_all(box, [3])
    assert box.retry_failed(since=7 * DAY) == 1
    assert box.stats()["by_status"]["failed"] == 2
    assert box.retry_failed(since=30 * DAY) == 2
    with pytest.raises(ValidationError) as err:
        box.retry_failed(since=0)
    assert err.value.errors[0].loc == "since"


def test_search_by_domain_any_case_and_idn(box: Any) -> None:
    box.accept(reminder(1, domain="Example.FI"))
    box.accept(reminder(2, domain="ääkkönen.fi", to="b@example.fi"))
    box.accept(reminder(3, domain="other.fi"))
    assert [m.domain for m in box.search(domain="EXAMPLE.fi.")] == ["example.fi"]
    found = box.search(domain="ÄÄKKÖNEN.fi")
    assert [m.domain for m in found] == ["xn--kknen-fraa0m.fi"]
    assert box.search(domain="xn--kknen-fraa0m.fi") == found
    assert box.search(domain="example.fi", brand="kustwebb") == []
    for bad in ("", "exa mple.fi", "-x-.fi", "a" * 300):
        with pytest.raises(ValidationError) as err:
            box.search(domain=bad)
        assert err.value.errors[0].loc == "domain"


def test_search_pages_by_cursor_with_every_filter(box: Any) -> None:
    ids = [a.id for a in box.accept_batch([reminder(i, domain="d.fi") for i in range(5)])]
    for filters in ({"domain": "d.fi"}, {"brand": "acme", "status": "queued"}, {}):
        first = box.search(limit=2, **filters)
        assert [m.id for m in first] == [ids[4], ids[3]]
        deeper = box.search(limit=2, before=first[-1].id, **filters)
        assert [m.id for m in deeper] == [ids[2], ids[1]]


def _plan(box: Outbox, query: str, params: list[Any]) -> str:
    with box.transaction(write=False) as cur:
        if box.kind == "sqlite":
            rows = cur.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
            return "\n".join(str(r[3]) for r in rows)
        rows = cur.execute("EXPLAIN " + query, params).fetchall()
        return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ("m.recipient = ?", "outbox_recipient"),
        ("m.domain = ?", "outbox_domain_name"),
        ("m.status = 'sent' AND m.status IN ({final}) AND m.brand = ?", "outbox_brand_final"),
        ("m.status = 'failed' AND m.status IN ({final}) AND m.event = ?", "outbox_event_final"),
    ],
)
def test_searches_walk_an_index_not_the_history(
    make_box: Callable[..., Outbox], where: str, index: str
) -> None:
    """The search SQL of ``Queries.search``, planned on a table the planner believes
    large: an index walk, newest first, no sort of every match."""
    from notifier.outbox import sql

    box = make_box()
    if box.kind == "postgres":
        with box.transaction() as cur:  # a planner that sees a big table, as at 10M
            cur.execute("SET LOCAL enable_seqscan = off")
    query = (
        "SELECT m.id FROM outbox_messages m WHERE "
        + where.format(final=sql.FINAL_LIST)
        + " AND m.id < ? ORDER BY m.id DESC LIMIT 51"
    )
    plan = _plan(box, query, ["x", 10**9])
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_stats_and_claim_plans_use_partial_indexes(make_box: Callable[..., Outbox]) -> None:
    box = make_box()
    plans = {
        "SELECT COUNT(*) FROM outbox_messages WHERE status = 'deferred' "
        "AND next_attempt_at <= ?": "outbox_deferred",
        "SELECT id FROM outbox_messages WHERE status = 'failed' AND updated_at >= ?": (
            "outbox_failed"
        ),
        "SELECT id FROM outbox_messages WHERE status IN ('queued', 'deferred') "
        "AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT 100": "outbox_due",
    }
    for query, index in plans.items():
        if box.kind == "postgres":
            query = query.replace("SELECT", "SELECT /* */", 1)
        plan = _plan(box, query, [1.0])
        if box.kind == "postgres" and index not in plan:
            continue  # an empty table: PostgreSQL may prefer a scan; see the next test
        assert index in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_retry_failed_uses_an_index_on_postgres(tmp_path: Path) -> None:
    """The plan of ``retry_failed``'s UPDATE, with the planner told the table is big."""
    with postgres_schema("retry") as url, open_outbox(Settings(var_dir=tmp_path), url=url) as box:
        with box.transaction() as cur:
            cur.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                str(r[0])
                for r in cur.execute(
                    "EXPLAIN UPDATE outbox_messages SET status = 'queued' "
                    "WHERE status = 'failed' AND updated_at >= ?",
                    [1.0],
                ).fetchall()
            )
    assert "outbox_failed" in plan, plan
