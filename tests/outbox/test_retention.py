"""Retention: old final messages and the history of their age go, nothing else does,
the search for them goes through an index, and the space comes back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notifier.outbox.model import DAY, Delivery, Status
from notifier.outbox.retention import OLD_FINAL
from tests.outbox.test_bodies import mail
from tests.test_outbox import OK, Clock

FAIL = OK.__class__("permanent", code=550, enhanced="5.1.1", text="no such user")
TEMP = OK.__class__("transient", code=451, enhanced="4.3.0", text="later")


def _count(box: Any, table: str) -> int:
    with box.transaction(write=False) as cur:
        row = cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(row[0])


def test_purge_takes_only_old_final_messages_and_old_history(
    make_box: Callable[..., Any], clock: Clock
) -> None:
    box = make_box()
    endpoint = box.add_endpoint(
        "https://hooks.example.fi/n", ["message.sent", "message.failed"], None, "sealed", ""
    )
    old = [r.id for r in box.accept_batch([mail(i) for i in range(6)])]
    claims = {c.id: c for c in box.claim("w", 6)}
    box.complete(
        "w",
        [
            Delivery(old[0], Status.SENT, attempt=OK),
            Delivery(old[1], Status.FAILED, reason="bounced", attempt=FAIL),
            Delivery(old[2], Status.DEFERRED, next_attempt_at=clock.now + DAY, attempt=TEMP),
        ],
    )
    box.release("w", [i for i in claims if i not in old[:3]])  # old[3:] queued again
    with box.transaction() as cur:  # history of that time with no message: an old report
        cur.execute(
            "INSERT INTO outbox_reports (received_at, kind, format, matched, outcome, sha256, "
            "size, raw) VALUES (?, 'bounce', 'dsn', ?, 'unmatched', 'x', 1, ?)",
            [clock.now, False, b"x"],
        )
        cur.execute(
            "INSERT INTO webhook_deliveries (endpoint, event, status, window_start, "
            "created_at, updated_at) VALUES (?, 999999, 'delivered', ?, ?, ?)",
            [endpoint.id, clock.now, clock.now, clock.now],
        )
    assert _count(box, "outbox_events") >= 2  # message.sent, message.failed, …
    assert _count(box, "webhook_deliveries") == 3  # theirs and the one above

    clock.advance(box.config.retention - DAY)
    young = box.accept(mail(50)).id
    due = [c.id for c in box.claim("w", 10)]
    box.complete("w", [Delivery(young, Status.SENT, attempt=OK)])
    box.release("w", [i for i in due if i != young])
    assert box.purge(now=clock.now) == 0  # not yet
    clock.advance(2 * DAY)
    assert box.purge() == 2  # the sent and the failed one

    assert set(_ids(box)) == {*old[2:], young}
    assert box.get(old[2]).status == Status.DEFERRED
    assert box.get(young).status == Status.SENT and box.raw(young).signed is False
    assert _count(box, "outbox_reports") == 0
    # the young message's events and deliveries stay; the old ones are gone
    with box.transaction(write=False) as cur:
        events = cur.execute("SELECT message FROM outbox_events").fetchall()
        deliveries = cur.execute("SELECT created_at FROM webhook_deliveries").fetchall()
    assert {int(m) for (m,) in events} == {young}
    assert deliveries and all(float(at) > clock.now - box.config.retention for (at,) in deliveries)
    with box.transaction(write=False) as cur:
        attempts = cur.execute("SELECT DISTINCT message FROM outbox_attempts").fetchall()
        bodies = cur.execute("SELECT message FROM outbox_bodies").fetchall()
    assert {int(m) for (m,) in attempts} <= set(_ids(box))
    assert {int(m) for (m,) in bodies} == set(_ids(box))


def _ids(box: Any) -> list[int]:
    with box.transaction(write=False) as cur:
        return [int(r[0]) for r in cur.execute("SELECT id FROM outbox_messages").fetchall()]


def test_finding_old_messages_uses_an_index(make_box: Callable[..., Any]) -> None:
    box = make_box()
    box.accept_batch([mail(i) for i in range(3)])
    query = OLD_FINAL  # what purge asks
    with box.transaction(write=False) as cur:
        if box.kind == "sqlite":
            plan = " ".join(
                str(r[-1]) for r in cur.execute(f"EXPLAIN QUERY PLAN {query}", [1.0, 10]).fetchall()
            )
            # a range of the index on final messages' updated_at
            assert "SEARCH outbox_messages USING" in plan and "updated_at<?" in plan
        else:
            cur.execute("SET LOCAL enable_seqscan = off")  # a tiny table: as on a big one
            plan = " ".join(
                str(r[0]) for r in cur.execute(f"EXPLAIN {query}", [1.0, 10]).fetchall()
            )
            assert "Index" in plan and "Seq Scan" not in plan


def test_purged_space_comes_back(make_box: Callable[..., Any], clock: Clock) -> None:
    box = make_box()
    if box.kind != "sqlite":
        # PostgreSQL: DELETE + autovacuum; freed space is reused, the files do not
        # shrink (docs/STORAGE.md). Here: a refill after a purge and VACUUM does not
        # grow the tables by what was purged.
        _fill(box, 300)
        full = box.database_bytes()
        clock.advance(box.config.retention + DAY)
        assert box.purge() == 300
        box.vacuum()  # what autovacuum does on its own
        _fill(box, 300)
        assert box.database_bytes() < full * 1.25  # not twice: the space was reused
        return
    _fill(box, 300)
    with box.transaction(write=False) as cur:
        assert cur.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    full = box.database_bytes()
    assert box.purge(now=clock.now + box.config.retention + DAY) == 300
    with box.transaction(write=False) as cur:
        assert cur.execute("PRAGMA freelist_count").fetchone() == (0,)
    assert box.database_bytes() < full / 2
    box.outbox._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert box.outbox.path.stat().st_size == box.database_bytes()


def _fill(box: Any, n: int) -> None:
    base = len(_ids(box)) + 1000 * int(box.clock())
    for start in range(0, n, 100):
        box.accept_batch([mail(base + i) for i in range(start, min(n, start + 100))])
        box.complete("w", [Delivery(c.id, Status.SENT, attempt=OK) for c in box.claim("w", 100)])
