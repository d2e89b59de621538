"""Issue 14: workers are woken by new mail instead of polling for it.

Every worker here polls only every :data:`POLL` seconds, so a message that arrives
within :data:`PROMPT` of being posted was delivered by a wake-up: ``notifier serve``'s
in-process event, a FIFO between processes on SQLite, ``LISTEN/NOTIFY`` on
PostgreSQL. Real parts throughout: ``notifier serve`` and ``notifier worker``
processes, a real SMTP server, real databases. Nothing asserts on milliseconds: the
limits only tell a wake-up from the poll.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from notifier.config import Settings
from notifier.delivery.relay import RelayTransport
from notifier.outbox import Outbox, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig
from tests.api.conftest import serving
from tests.smtpd import SMTPTestServer
from tests.test_outbox import reminder
from tests.worker.support import (
    BRANDS,
    FAST,
    message_id_of,
    post_reminder,
    serve_env,
    spawn_worker,
    stop,
    wait_for,
)

#: the fallback poll of every worker in these tests (seconds)
POLL = 120.0
#: a message delivered this soon after it was posted was woken, not polled, for
PROMPT = 30.0


def delivered(smtp: SMTPTestServer) -> set[str]:
    return {message_id_of(m.data) for m in smtp.messages}


def post_and_expect(smtp: SMTPTestServer, post: Callable[[int], str], i: int) -> None:
    """Post event ``i`` and wait for its message at the SMTP server, well within
    :data:`PROMPT` (the worker's poll is :data:`POLL`)."""
    message_id = post(i)
    wait_for(lambda: message_id in delivered(smtp), f"message {i} (by a wake-up)", PROMPT)


@pytest.mark.parametrize("worker_processes", ["1", "0"], ids=["worker-process", "in-process"])
def test_serve_delivers_a_posted_event_before_its_poll_would_fire(
    tmp_path: Path, key_dir: Path, smtp_server: SMTPTestServer, worker_processes: str
) -> None:
    # its worker in a process of its own (a FIFO on SQLite) or in its own (a callback)
    env, token = serve_env(tmp_path, key_dir, smtp_server.url)
    env.update(NOTIFIER_WORKER_POLL=str(POLL), NOTIFIER_WORKER_PROCESSES=worker_processes)
    with serving(tmp_path, env) as url, httpx.Client(base_url=url) as client:

        def post(i: int) -> str:
            return post_reminder(client, token, i)

        # the first may meet the worker's first claim; the second finds it asleep
        for i in range(3):
            post_and_expect(smtp_server, post, i)


def test_worker_processes_are_woken_by_another_process_s_intake(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # SQLite: a byte in each worker's FIFO; PostgreSQL: NOTIFY in the accepting transaction
    log = tmp_path / "worker.log"
    workers = [
        spawn_worker(processes, box_settings, smtp_server.url, log, NOTIFIER_WORKER_POLL=str(POLL))
        for _ in range(2)
    ]
    wait_for(lambda: log.read_text().count("started") == 2, "two workers started")

    def post(i: int) -> str:
        return live_box.accept(reminder(i)).message_id

    for i in range(4):
        post_and_expect(smtp_server, post, i)
    for worker in workers:
        stop(worker, log)
    assert len(smtp_server.messages) == 4  # woken together, claimed once


def test_intake_without_a_listening_worker_still_accepts(
    live_box: Outbox, box_settings: Settings
) -> None:
    stale = None
    full_fd = None
    if live_box.kind == "sqlite":
        # a killed worker's FIFO (no reader) and a stopped worker's (full)
        database = Path(box_settings.database.split("///", 1)[1])
        run = database.parent / "run"
        run.mkdir(parents=True, exist_ok=True)
        prefix = f"{database.name}.wake."
        stale = run / f"{prefix}1.dead"
        os.mkfifo(stale)
        full = run / f"{prefix}2.full"
        os.mkfifo(full)
        full_fd = os.open(full, os.O_RDWR | os.O_NONBLOCK)
        try:
            while True:
                os.write(full_fd, b"x" * 4096)
        except BlockingIOError:
            pass
    try:
        for i in range(3):
            assert live_box.accept(reminder(i)).status == Status.QUEUED
        if stale is not None:
            assert not stale.exists()  # removed: nobody will read it again
    finally:
        if full_fd is not None:
            os.close(full_fd)
    assert live_box.stats()["by_status"]["queued"] == 3


@contextmanager
def worker_thread(box: Outbox, key_dir: Path, url: str) -> Iterator[Worker]:
    """An in-process worker (polling every :data:`POLL`) on a thread of its own."""
    transport = RelayTransport(url, timeouts=FAST, helo="worker.notifier.test")
    worker = Worker(
        box.outbox if hasattr(box, "outbox") else box,
        transport,
        Signer(KeyStore(key_dir)),
        config=WorkerConfig(poll_interval=POLL),
        brands=BRANDS,
    )
    loop = asyncio.new_event_loop()

    async def go() -> None:
        try:
            await worker.run()
        finally:
            await transport.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(go(),))
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(60)
        loop.close()


def test_deferred_mail_waits_for_its_time_and_no_longer(
    live_box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    deferred = live_box.accept(reminder(1))
    first = live_box.accept(reminder(3))
    wait = 10.0
    due = time.time() + wait
    with live_box.transaction() as cur:  # as a 4xx would leave it
        cur.execute(
            "UPDATE outbox_messages SET status = 'deferred', attempts = 1, "
            "next_attempt_at = ? WHERE id = ?",
            [due, deferred.id],
        )
    with worker_thread(live_box, key_dir, smtp_server.url):
        wait_for(lambda: first.message_id in delivered(smtp_server), "the first", wait / 2)
        # the worker sleeps now; new mail wakes it, and the deferred message is not
        # taken along early
        fresh = live_box.accept(reminder(2))
        wait_for(lambda: fresh.message_id in delivered(smtp_server), "the new one", wait / 2)
        assert deferred.message_id not in delivered(smtp_server)
        # nothing wakes it but its own time, long before the poll
        wait_for(lambda: deferred.message_id in delivered(smtp_server), "the deferred one", PROMPT)
    record = live_box.get(deferred.id)
    assert record.status == Status.SENT and record.sent_at is not None
    assert record.sent_at.timestamp() >= due
    assert len(smtp_server.messages) == 3
