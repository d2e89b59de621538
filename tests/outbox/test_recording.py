"""Recording a worker's outcomes: a batch with a lost lease among them, its status
events and counters, the same on SQLite and on PostgreSQL (where the batch is one
``UPDATE … FROM (VALUES …)`` and multi-row INSERTs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.outbox import Outbox
from notifier.outbox.model import Delivery, OutboxConfig, Status
from notifier.outbox.postgres import MultiRow
from tests.test_outbox import BUSY, MINUTE, OK, Clock, reminder, signed_delivery


def _events(box: Outbox) -> list[tuple[str, int, dict[str, object]]]:
    with box.transaction(write=False) as cur:
        rows = cur.execute("SELECT type, message, data FROM outbox_events ORDER BY id").fetchall()
    return [(str(t), int(m), json.loads(d)) for t, m, d in rows]


def test_a_batch_with_a_lost_lease_records_the_rest_once(
    make_box: Callable[..., Outbox], clock: Clock, key_dir: Path
) -> None:
    box = make_box(OutboxConfig(lease=15 * MINUTE))
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(4)])]
    mine = {c.id: c for c in box.claim("worker-a", 3)}
    clock.advance(16 * MINUTE)  # a's leases expire: b takes the first one over
    taken = box.claim("worker-b", 1)[0].id
    assert taken == ids[0]
    box.heartbeat("worker-a")  # a still holds ids[1] and ids[2]
    clock.advance(5)
    batch = [
        Delivery(ids[0], Status.SENT, attempt=OK),  # lost: worker-b holds it now
        signed_delivery(box, mine[ids[1]], key_dir, OK, clock.now),
        Delivery(ids[2], Status.DEFERRED, "451 try later", clock.now + 300, attempt=BUSY),
    ]
    assert box.complete("worker-a", batch) == [ids[0]]
    assert box.get(ids[0]).status == Status.SENDING  # b's, untouched
    sent, deferred = box.get(ids[1]), box.get(ids[2])
    assert sent.status == Status.SENT and sent.dkim_domain and sent.sent_sha256
    assert sent.attempts == 1
    assert deferred.status == Status.DEFERRED and deferred.reason == "451 try later"
    assert deferred.next_attempt_at is not None
    assert deferred.next_attempt_at.timestamp() == pytest.approx(clock.now + 300)
    # events carry the messages as stored, one per recorded outcome (none for the lost)
    events = [(t, m, d["status"], d["attempts"]) for t, m, d in _events(box)]
    assert [e for e in events if e[0] != "message.accepted"] == [
        ("message.sent", ids[1], "sent", 1),
        ("message.deferred", ids[2], "deferred", 1),
    ]
    counters = box.metrics().counters
    assert counters[("acme", "domain.renewal_reminder", "sent")] == 1
    # the same outcomes again (a commit whose answer was lost): nothing twice
    assert box.complete("worker-a", batch[1:]) == []
    assert len(box.get(ids[1]).attempt_log) == 1
    assert len(_events(box)) == len(events)
    assert box.metrics().counters == counters


def test_multirow_plans_only_plain_inserts() -> None:
    counters = MultiRow.of(
        "INSERT INTO c (brand, event, name, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (brand, event, name) DO UPDATE SET value = c.value + excluded.value"
    )
    assert counters is not None and counters.width == 4 and counters.key == (0, 1, 2)
    assert counters.statement(2).count("(?, ?, ?, ?)") == 2
    assert not counters.fits([(1, 2, 3, 4.0), (1, 2, 3, 5.0)])  # a key twice
    literal = MultiRow.of("INSERT INTO d (a, status, n, b) VALUES (?, 'pending', 0, ?)")
    assert literal is not None and literal.width == 2 and literal.key is None
    for sql in (
        "INSERT INTO x (a, b) VALUES (?, lower(?))",  # an expression
        "INSERT INTO x (a, b) VALUES (?, ?) RETURNING id",  # rows back: per row
        "INSERT INTO x (a) SELECT 1",
        "INSERT INTO x (a, b) VALUES (?, 'a, b')",  # a literal with a comma
        "INSERT INTO x (a) VALUES (?) ON CONFLICT ON CONSTRAINT k DO UPDATE SET a = 1",
        "UPDATE x SET a = ?",
    ):
        assert MultiRow.of(sql) is None, sql


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_many_rows_in_one_statement_or_per_row_when_a_key_repeats(box: Outbox) -> None:
    upsert = (
        "INSERT INTO outbox_counters (brand, event, name, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (brand, event, name) DO UPDATE SET value = outbox_counters.value + "
        "excluded.value"
    )
    rows = [("acme", "e", f"n{i}", float(i)) for i in range(1200)]  # three statements
    with box.transaction() as cur:
        cur.many(upsert, rows)
        cur.many(upsert, [("acme", "e", "n1", 10.0), ("acme", "e", "n1", 100.0)])  # per row
    counters = box.metrics().counters
    assert len([k for k in counters if k[:2] == ("acme", "e")]) == 1200
    assert counters[("acme", "e", "n1")] == 111.0 and counters[("acme", "e", "n1199")] == 1199.0
