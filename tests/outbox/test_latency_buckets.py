"""Issue 14: the accept-to-sent histogram resolves milliseconds, and a database whose
counters predate the sub-second buckets gets them filled once from its stored rows,
the old buckets untouched (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from notifier.config import Settings
from notifier.outbox import Outbox, open_outbox
from notifier.outbox.model import (
    LATENCY_BUCKETS,
    SUBSECOND_BUCKETS,
    latency_bucket,
    latency_counter,
)
from tests import test_outbox as contract
from tests.smtpd import SMTPTestServer
from tests.test_outbox import reminder
from tests.worker.support import run_worker

# the outbox contract's fixtures: one database of each kind, keys, a fake clock
db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box


def buckets(box: Outbox) -> dict[float, float]:
    return dict(box.metrics().latency_buckets())


def test_a_sent_message_counts_in_its_bucket_and_every_bucket_above(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept_batch([reminder(1), reminder(2), reminder(3)])
    assert run_worker(box, key_dir, smtp_server.url).sent == 3  # fake clock: 0 ms each
    with box.transaction() as cur:  # 20 ms and 3 s, as if measured so
        cur.execute("UPDATE outbox_counters SET value = 1 WHERE name = 'latency_in:0.005'")
        cur.many(
            "INSERT INTO outbox_counters (brand, event, name, value) VALUES (?, ?, ?, 1)",
            [("acme", "domain.renewal_reminder", latency_bucket(b)) for b in (0.025, 5)],
        )
    found = buckets(box)
    assert [found[b] for b in (0.005, 0.01, 0.025, 1, 5, 96 * 3600)] == [1, 1, 2, 2, 3, 3]


def test_the_lowest_buckets_are_milliseconds() -> None:
    assert LATENCY_BUCKETS[:8] == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
    assert SUBSECOND_BUCKETS == LATENCY_BUCKETS[:7]


def test_counters_from_before_the_subsecond_buckets_are_filled_once(
    box: Outbox, box_settings: Settings, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept_batch([reminder(1), reminder(2)])
    assert run_worker(box, key_dir, smtp_server.url).sent == 2  # fake clock: 0 ms each
    assert buckets(box)[0.005] == 2
    with box.transaction() as cur:
        # one of them took 20 ms; and the database is made to look as it did before
        # the sub-second buckets: none of their counters, no marker, a stale schema
        cur.execute(
            "UPDATE outbox_messages SET created_at = sent_at - 0.02 WHERE id = "
            "(SELECT MIN(id) FROM outbox_messages)"
        )
        # (before: cumulative counters of the buckets from 1 s up, none per bucket)
        cur.execute("DELETE FROM outbox_counters WHERE name LIKE ?", ["latency_in:%"])
        cur.many(
            "INSERT INTO outbox_counters (brand, event, name, value) VALUES (?, ?, ?, ?)",
            [
                ("acme", "domain.renewal_reminder", latency_counter(b), 2)
                for b in LATENCY_BUCKETS
                if b not in SUBSECOND_BUCKETS
            ],
        )
        cur.execute(
            "DELETE FROM outbox_meta WHERE key IN ('latency_subsecond', 'schema_fingerprint')"
        )
    assert buckets(box)[0.005] == 0 and buckets(box)[1] == 2
    for _ in range(2):  # the second opening adds nothing
        with box.transaction() as cur:
            cur.execute("DELETE FROM outbox_meta WHERE key = 'schema_fingerprint'")
        with open_outbox(box_settings, url=box_settings.database) as reopened:
            found = buckets(reopened)
    assert found[0.005] == 1 and found[0.01] == 1  # the 0 ms message
    assert found[0.025] == 2 and found[0.5] == 2  # and the 20 ms one
    assert found[1] == 2 and found[5] == 2  # the old buckets kept their counts
