"""The worker loop: leases, heartbeats and shutdown, in process and as real processes.

In-process tests drive time with the fake clock; the process tests (two workers
sharing PostgreSQL, ``kill -9`` mid-batch, SIGTERM) run ``python -m notifier.worker``
on the real clock with a short lease. Waiting loops have generous limits only so that
a bug cannot hang the suite; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.config import Settings
from notifier.delivery.relay import RelayTransport
from notifier.outbox import Outbox, OutboxConfig, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig, WorkerStats
from tests.smtpd import SMTPTestServer
from tests.test_outbox import Clock, count, reminder
from tests.worker.support import (
    BRANDS,
    FAST,
    MINUTE,
    fault,
    message_id_of,
    run_worker,
    spawn_worker,
    stop,
    wait_for,
)

# --- leases and shutdown ----------------------------------------------------------------------


def test_expired_lease_is_reclaimed_and_sent_once(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    assert len(box.claim("worker-that-died", 10)) == 3
    assert run_worker(box, key_dir, smtp_server.url).claimed == 0  # leases still valid
    clock.advance(16 * MINUTE)
    assert run_worker(box, key_dir, smtp_server.url).sent == 3
    for i in ids:
        record = box.get(i)
        assert record.status == Status.SENT and record.attempts == 2
        assert "interrupted" in record.attempt_log[0].text
    assert sorted(message_id_of(m.data) for m in smtp_server.messages) == sorted(
        box.get(i).message_id for i in ids
    )


@fault("DOT", action="delay", delay=0.2)
def test_stop_finishes_in_flight_sends_and_releases_the_rest(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept_batch([reminder(i) for i in range(20)])

    async def stop_after_first(worker: Worker) -> None:
        while not smtp_server.messages:
            await asyncio.sleep(0.01)
        worker.stop()

    stats = run_worker(
        box,
        key_dir,
        smtp_server.url,
        control=stop_after_first,
        config=WorkerConfig(batch_size=10, concurrency=2, poll_interval=0.01),
    )
    by_status = box.stats()["by_status"]
    assert by_status["sending"] == 0
    assert stats.sent >= 1 and stats.released >= 1
    assert by_status["sent"] == stats.sent == len(smtp_server.messages)
    assert by_status["queued"] == 20 - stats.sent


def test_stop_before_run_starts_returns_at_once(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept(reminder(1))

    async def go() -> WorkerStats:
        transport = RelayTransport(smtp_server.url, timeouts=FAST)
        worker = Worker(box.outbox, transport, Signer(KeyStore(key_dir)), brands=BRANDS)
        task = asyncio.create_task(worker.run())  # not started yet
        worker.stop()
        try:
            return await asyncio.wait_for(task, 30)
        finally:
            await transport.close()

    stats = asyncio.run(go())
    assert stats.sent == 0 and box.stats()["by_status"]["queued"] == 1


# --- real worker processes ------------------------------------------------------------------------


def test_two_worker_processes_share_the_queue_each_message_sent_once(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # PostgreSQL: SKIP LOCKED claims (several machines); SQLite: claims serialised by
    # BEGIN IMMEDIATE (several processes on one machine)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [
        spawn_worker(processes, box_settings, smtp_server.url, log, "--batch", "25") for log in logs
    ]
    wait_for(
        lambda: (
            all("started" in log.read_text() for log in logs if log.exists())
            and all(log.exists() for log in logs)
        ),
        "both workers to start",
    )
    n = 600
    for start in range(0, n, 100):
        live_box.accept_batch(
            [reminder(i, domain=f"domain-{i}.fi") for i in range(start, start + 100)]
        )
    wait_for(lambda: count(live_box, Status.SENT) == n, f"{n} messages sent")
    for proc, log in zip(workers, logs, strict=True):
        stop(proc, log)

    records = [live_box.get(r.id) for r in live_box.search(limit=n)]
    assert len(records) == n and all(r.status == Status.SENT for r in records)
    assert all(len(r.attempt_log) == 1 for r in records)  # nobody sent anything twice
    received = [message_id_of(m.data) for m in smtp_server.messages]
    assert len(received) == n and set(received) == {r.message_id for r in records}
    names = {r.attempt_log[0].worker for r in records}
    assert len(names) == 2  # both workers took part


@pytest.mark.smtp_fault("DOT", action="delay", delay=0.3)
def test_kill_9_mid_batch_then_restart_every_message_sent(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    n = 30
    ids = [r.id for r in live_box.accept_batch([reminder(i) for i in range(n)])]
    url = f"{smtp_server.url}?pool_size=4"
    log = tmp_path / "worker.log"
    first = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
    # the server stores each message, then waits 0.3 s before its 250: killing the
    # worker now leaves messages the server has but the outbox does not know are sent
    wait_for(lambda: len(smtp_server.messages) >= 3, "the first deliveries")
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    assert count(live_box, Status.SENDING) > 0
    smtp_server.handler.faults.clear()

    second = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
    wait_for(lambda: count(live_box, Status.SENT) == n, "every message sent after restart")
    stop(second, log)

    records = [live_box.get(i) for i in ids]
    assert all(r.status == Status.SENT for r in records)
    by_id: dict[str, int] = {}
    for m in smtp_server.messages:
        mid = message_id_of(m.data)
        by_id[mid] = by_id.get(mid, 0) + 1
    assert set(by_id) == {r.message_id for r in records}  # none lost
    resent = [r for r in records if by_id[r.message_id] > 1]
    assert resent, "the kill should have caught a delivery before its 250"
    for r in resent:  # the resend carries the Message-ID fixed at acceptance
        assert any("interrupted" in a.text for a in r.attempt_log)
        assert by_id[r.message_id] == 2


@pytest.mark.smtp_fault("DOT", action="delay", delay=0.2)
def test_sigterm_in_a_worker_process_releases_unstarted_messages(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    n = 40
    live_box.accept_batch([reminder(i) for i in range(n)])
    log = tmp_path / "worker.log"
    proc = spawn_worker(
        processes,
        box_settings,
        f"{smtp_server.url}?pool_size=4",
        log,
        "--batch",
        "20",
        "--concurrency",
        "4",
    )
    wait_for(lambda: len(smtp_server.messages) >= 2, "the first deliveries")
    stop(proc, log)
    stats = live_box.stats()["by_status"]
    assert stats["sending"] == 0
    assert stats["sent"] == len(smtp_server.messages)  # in-flight sends were finished
    assert stats["queued"] == n - stats["sent"] > 0  # the rest went back to the queue
    assert "released" in log.read_text()


def test_until_idle_process_exits_when_done(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    live_box.accept_batch([reminder(i) for i in range(5)])
    log = tmp_path / "worker.log"
    proc = spawn_worker(processes, box_settings, smtp_server.url, log, "--until-idle")
    assert proc.wait(120) == 0, log.read_text(errors="replace")
    assert count(live_box, Status.SENT) == 5 and len(smtp_server.messages) == 5


@fault("DOT", action="delay", delay=0.4)
def test_heartbeat_keeps_the_lease_of_a_slow_send(
    make_box: Callable[..., Outbox], key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    box = make_box(OutboxConfig(lease=60.0))
    mid = box.accept(reminder(30)).id
    seen: dict[str, float] = {}

    async def age_the_lease(worker: Worker) -> None:
        while not smtp_server.messages:  # the send is in flight
            await asyncio.sleep(0.01)
        clock.advance(50.0)  # most of the lease has gone by
        await asyncio.sleep(0.15)  # heartbeats every 0.02 s
        record = await asyncio.to_thread(box.get, mid)
        assert record.lease_expires_at is not None
        seen["lease_left"] = record.lease_expires_at.timestamp() - clock.now
        while box.get(mid).status != Status.SENT:
            await asyncio.sleep(0.02)
        worker.stop()

    run_worker(
        box,
        key_dir,
        smtp_server.url,
        control=age_the_lease,
        config=WorkerConfig(poll_interval=0.01, flush_interval=0.01, heartbeat_interval=0.02),
    )
    assert seen["lease_left"] > 55.0
    assert box.get(mid).status == Status.SENT and len(smtp_server.messages) == 1
