"""Recording outcomes: the window between a relay's 250 and its record.

Every 250 not yet recorded when a worker dies is sent again, so outcomes are committed
without waiting for the disk (the record survives the worker, not the database
machine), a commit whose answer was lost can be repeated, a heartbeat extends only the
leases of messages still in hand, a worker warms its recording connection before its
first claim, and stops sending while a full transaction of outcomes waits. On
SQLite and PostgreSQL (the ``box`` fixture).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from notifier.delivery.relay import RelayTransport
from notifier.errors import StorageError
from notifier.outbox import Delivery, Outbox, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig
from tests.smtpd import SMTPTestServer
from tests.test_outbox import OK, Clock, count, reminder
from tests.worker.support import BRANDS, FAST, MINUTE, message_id_of, run_worker


def synchronous_level(box: Outbox, *, durable: bool) -> str:
    """The backend's commit durability setting inside a transaction of that kind."""
    query = "SHOW synchronous_commit" if box.kind == "postgres" else "PRAGMA synchronous"
    with box.transaction(durable=durable) as cur:
        row = cur.execute(query).fetchone()
    assert row is not None
    return str(row[0])


def test_outcomes_commit_without_waiting_for_the_disk_and_nothing_else_does(box: Outbox) -> None:
    durable, relaxed = ("on", "off") if box.kind == "postgres" else ("2", "1")  # FULL, NORMAL
    assert synchronous_level(box, durable=True) == durable
    assert synchronous_level(box, durable=False) == relaxed
    # the relaxed level ends with its transaction, also when that one fails
    assert synchronous_level(box, durable=True) == durable
    with pytest.raises(RuntimeError), box.transaction(durable=False):
        raise RuntimeError("boom")
    assert synchronous_level(box, durable=True) == durable

    seen: list[str] = []
    original = box.outbox.transaction

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append("relaxed" if kwargs.get("durable") is False else "durable")
        return original(*args, **kwargs)

    outbox = box.outbox
    record = box.accept(reminder(1))  # accepted mail: durable
    claim = box.claim("w", 1)[0]
    outbox.transaction = spy  # type: ignore[method-assign]
    try:
        assert box.complete("w", [Delivery(claim.id, Status.SENT, attempt=OK)]) == []
        box.accept(reminder(2))
    finally:
        del outbox.transaction
    assert seen[0] == "relaxed"  # the outcome
    assert "relaxed" not in seen[1:]  # the second accept
    assert box.get(record.id).status == Status.SENT


def test_recording_the_same_outcomes_twice_stores_them_once(box: Outbox) -> None:
    # A commit whose answer is lost (the connection breaks during COMMIT) is tried
    # again by the recorder: the second try must not add attempts nor report the
    # messages as taken over by another worker.
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    claims = box.claim("w", 3)
    outcomes = [Delivery(c.id, Status.SENT, attempt=OK) for c in claims]
    assert box.complete("w", outcomes) == []
    assert box.complete("w", outcomes) == []
    for i in ids:
        record = box.get(i)
        assert record.status == Status.SENT
        assert [a.outcome for a in record.attempt_log] == ["sent"]
    # another worker's late outcome for the same message is still evidence, and lost
    late = Delivery(ids[0], Status.SENT, attempt=OK)
    assert box.complete("worker-b", [late]) == [ids[0]]
    assert len(box.get(ids[0]).attempt_log) == 2


def test_a_heartbeat_extends_only_the_leases_of_messages_in_hand(box: Outbox, clock: Clock) -> None:
    # After a crash of the database machine, an outcome the worker recorded may be
    # gone; the message must not stay leased to a worker that no longer holds it.
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    assert len(box.claim("w", 3)) == 3
    clock.advance(10 * MINUTE)
    assert box.heartbeat("w", ids=[ids[0], ids[2]]) == 2
    clock.advance(10 * MINUTE)  # the lease of ids[1] has expired, the others have not
    assert [c.id for c in box.claim("other", 10)] == [ids[1]]
    assert box.get(ids[1]).possible_duplicate
    assert box.heartbeat("w") == 2  # without ids: everything the worker holds


class CommitAnswerLost:
    """The real outbox, except that the first ``complete`` commits and then raises, as
    when the connection breaks while the COMMIT's answer is on its way."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.outbox = self  # what run_worker works on
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def complete(self, worker: str, deliveries: Any) -> list[int]:
        lost = self.inner.complete(worker, deliveries)
        if not self.failed:
            self.failed += 1
            raise StorageError("the outbox database is unavailable: connection lost (injected)")
        return lost


def test_a_worker_repeats_a_commit_whose_answer_was_lost_without_doubling_it(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(6)])]
    flaky = CommitAnswerLost(box.outbox)
    stats = run_worker(
        cast(Any, flaky),
        key_dir,
        smtp_server.url,
        config=WorkerConfig(poll_interval=0.01, backoff_max=0.05),
    )
    assert flaky.failed == 1
    assert stats.sent == 6 and stats.lost_leases == 0
    for i in ids:
        assert [a.outcome for a in box.get(i).attempt_log] == ["sent"]
    received = Counter(message_id_of(m.data) for m in smtp_server.messages)
    assert sorted(received.values()) == [1] * 6


class RecordingDown:
    """The real outbox, except that ``complete`` fails until :meth:`recover`."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.refused = 0
        self.down = threading.Event()
        self.down.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def recover(self) -> None:
        self.down.clear()

    def complete(self, worker: str, deliveries: Any) -> list[int]:
        if self.down.is_set():
            self.refused += 1
            raise StorageError("the outbox database is unavailable: connection refused (injected)")
        return self.inner.complete(worker, deliveries)


def test_a_worker_sends_nothing_more_while_a_full_transaction_of_outcomes_waits(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    # Before: while outcomes could not be recorded the senders went on through
    # everything claimed, and a worker killed then sent all of it again.
    n, flush = 12, 3
    box.accept_batch([reminder(i) for i in range(n)])
    flaky = RecordingDown(box.outbox)

    async def go() -> None:
        transport = RelayTransport(smtp_server.url, timeouts=FAST, helo="worker.notifier.test")
        worker = Worker(
            cast(Outbox, flaky),
            transport,
            Signer(KeyStore(key_dir)),
            config=WorkerConfig(
                batch_size=n, concurrency=1, flush_size=flush, poll_interval=0.01, backoff_max=0.02
            ),
            brands=BRANDS,
        )
        run = asyncio.create_task(worker.run())
        try:
            while flaky.refused < 10:  # the recorder has tried (and failed) many times
                await asyncio.sleep(0.01)
            assert len(smtp_server.messages) == flush  # and the senders waited for it
            flaky.recover()
            while await asyncio.to_thread(count, box, Status.SENT) < n:
                await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await run
            await transport.close()

    asyncio.run(go())
    received = Counter(message_id_of(m.data) for m in smtp_server.messages)
    assert len(received) == n and set(received.values()) == {1}


class CallLog:
    """The real outbox, noting which thread made which worker call, in order."""

    CALLS = ("warm_up", "claim", "complete")

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.outbox = self  # what run_worker works on
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name not in self.CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread().name))
            return value(*args, **kwargs)

        return call


def test_the_recorder_warms_its_connection_before_the_first_claim(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    # Before: the recorder opened its connection with the first outcome; on a busy
    # machine a fresh PostgreSQL backend took longer than a hundred sends to commit it.
    box.accept_batch([reminder(i) for i in range(3)])
    logged = CallLog(box.outbox)
    assert run_worker(cast(Any, logged), key_dir, smtp_server.url).sent == 3
    names = [name for name, _ in logged.calls]
    assert names[0] == "warm_up" and names.count("warm_up") == 1
    assert "claim" in names
    recorder = dict(logged.calls)["warm_up"]
    assert dict(logged.calls)["complete"] == recorder  # on the thread that records
