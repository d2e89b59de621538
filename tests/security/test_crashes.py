"""Issue 10 §6, crashes: what a ``kill -9`` or a database outage costs.

* a killed worker makes at most about one duplicate: outcomes are recorded within
  milliseconds of their 250, not on a timer (real worker processes, a real SMTP server);
* a message re-sent after a killed worker is flagged ``possible_duplicate`` on the
  message itself, so the attempt log, ``queue show`` and the API agree;
* ``notifier serve`` killed with ``kill -9`` leaves no child processes behind;
* a database outage is logged when it starts and when it ends, not on every poll, and
  the worker delivers everything once it is over.

Waiting loops have generous limits only so that a bug cannot hang the suite; nothing
asserts on speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from notifier.config import Settings
from notifier.delivery.relay import RelayTransport
from notifier.errors import StorageError
from notifier.outbox import Outbox, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig
from tests import test_outbox as contract
from tests.conftest_smtp import free_port
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

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; httpx still works (tests run with -W error).
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

# the outbox contract's fixtures: one database of each kind per test
db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box


# --- duplicates after kill -9 ---------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_each_killed_worker_sends_at_most_about_one_message_twice(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # Before: outcomes waited up to 0.1 s (flush_interval) after their 250, so each
    # kill caught every message of that tenth of a second: ~10 duplicates per kill.
    n, kills = 900, 3
    for start in range(0, n, 100):
        live_box.accept_batch(
            [reminder(i, domain=f"domain-{i}.fi") for i in range(start, start + 100)]
        )
    # one connection: a steady flow like a relay's, whose 250s come one at a time
    url = f"{smtp_server.url}?pool_size=1"
    log = tmp_path / "worker.log"
    for _ in range(kills):
        worker = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
        floor = len(smtp_server.messages) + 100  # in full flow, not starting up
        wait_for(lambda f=floor: len(smtp_server.messages) >= f, "a hundred deliveries")
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
    assert count(live_box, Status.SENT) < n, "the kills must come mid-run"

    last = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
    wait_for(lambda: count(live_box, Status.SENT) == n, "every message sent")
    stop(last, log)

    received = Counter(message_id_of(m.data) for m in smtp_server.messages)
    expected = {live_box.get(r.id).message_id for r in live_box.search(limit=n)}
    assert len(expected) == n and set(received) == expected  # nothing lost
    duplicates = sum(times - 1 for times in received.values())
    print(f"duplicates after {kills} kills: {duplicates}")  # the figure the issue asks for
    # about one per kill. Each send waits, connection in hand, while max_unrecorded
    # (4) 250s are unrecorded (Envelope.ready), so however slow the commits (a loaded
    # machine) a kill leaves at most 4 + 1 per connection; without that gate, senders
    # queued for the connection all sent: 13-23 after 3 kills at load 4. The old timer
    # made 6-10 per kill.
    assert duplicates <= 2 * kills, f"{duplicates} duplicate(s) after {kills} kills"


# --- the possible-duplicate flag -----------------------------------------------------------


def test_a_resend_after_a_killed_worker_flags_the_message_everywhere(
    box: Outbox,
    box_settings: Settings,
    key_dir: Path,
    clock: Clock,
    smtp_server: SMTPTestServer,
) -> None:
    interrupted = box.accept(reminder(1)).id
    assert [c.id for c in box.claim("worker-that-was-killed", 10)] == [interrupted]
    clean = box.accept(reminder(2)).id  # queued after the kill: sent once, no doubt
    clock.advance(16 * MINUTE)  # the dead worker's lease expires
    assert run_worker(box, key_dir, smtp_server.url).sent == 2

    record = box.get(interrupted)
    assert record.status == Status.SENT
    assert [a.possible_duplicate for a in record.attempt_log] == [True, False]
    assert record.possible_duplicate  # the message says so too, not only its attempt
    assert not box.get(clean).possible_duplicate

    shown = queue_show(box_settings, interrupted)
    assert shown["possible_duplicate"] is True
    assert queue_show(box_settings, clean)["possible_duplicate"] is False

    from notifier.api import create_app

    with TestClient(create_app(box_settings)) as client:
        store = client.app.state.tokens  # type: ignore[attr-defined]
        token = store.create(["messages:read"], label="support")[1]
        headers = {"Authorization": f"Bearer {token}"}
        body = client.get(f"/v1/messages/{interrupted}", headers=headers).json()
        assert body["possible_duplicate"] is True
        assert [a["possible_duplicate"] for a in body["attempt_log"]] == [True, False]
        body = client.get(f"/v1/messages/{clean}", headers=headers).json()
        assert body["possible_duplicate"] is False


def queue_show(settings: Settings, message: int) -> dict[str, Any]:
    """``notifier queue show ID --json`` in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_VAR_DIR=str(settings.var_dir),
        NOTIFIER_KEY_DIR=str(settings.keys_path),
        NOTIFIER_SECRET_KEY="test-secret",
        NOTIFIER_DATABASE_URL=settings.database,
    )
    done = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "queue", "show", str(message), "--json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- no orphans after kill -9 of serve --------------------------------------------------------


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with _suppress():
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for an init that may not reap)."""
    with _suppress():
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return False


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError, ValueError, IndexError)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux")
def test_serve_killed_with_kill_9_leaves_no_child_processes(tmp_path: Path) -> None:
    # Before: the intake processes and multiprocessing's resource tracker outlived
    # their parent (18 orphans after 6 kills in the soak). The delivery worker's
    # process (notifier.worker.process) must not outlive it either.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_VAR_DIR=str(tmp_path / "var"),
        NOTIFIER_SECRET_KEY="test-secret",
        NOTIFIER_INTAKE_PROCESSES="2",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:

        def ready() -> bool:
            assert serve.poll() is None, log.read_text(errors="replace")
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
            text = log.read_text(errors="replace")
            return ok and "intake: 2 worker processes" in text and "worker process" in text

        wait_for(ready, "notifier serve with two intake processes and its worker process")
        children = children_of(serve.pid)
        assert len(children) >= 3, log.read_text(errors="replace")
        serve.send_signal(signal.SIGKILL)
        assert serve.wait(30) == -signal.SIGKILL
        wait_for(
            lambda: not any(running(pid) for pid in children),
            f"the children {sorted(children)} to exit after their parent",
            limit=15.0,
        )
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(30)
        for pid in children:  # a failing run must not leave them behind either
            if running(pid):
                os.kill(pid, signal.SIGKILL)


# --- database outage ------------------------------------------------------------------------


class FlakyOutbox:
    """The real outbox, except that every worker call raises StorageError while an
    outage (started by :meth:`outage`) lasts."""

    CALLS = ("claim", "complete", "heartbeat", "release", "release_held", "purge")

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.down_until = 0.0
        self.refused = 0

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name not in self.CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if time.monotonic() < self.down_until:
                self.refused += 1
                raise StorageError("database unavailable: connection refused (injected)")
            return value(*args, **kwargs)

        return call


@fault("DOT", action="delay", delay=0.3)
def test_a_database_outage_is_logged_once_and_the_worker_recovers(
    box: Outbox,
    key_dir: Path,
    smtp_server: SMTPTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: an ERROR per poll (every 0.2 s) for as long as the database was down.
    n = 30
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(n)])]
    flaky = FlakyOutbox(box)
    caplog.set_level(logging.DEBUG, logger="notifier.worker")

    async def go() -> None:
        transport = RelayTransport(smtp_server.url, timeouts=FAST, helo="worker.notifier.test")
        worker = Worker(
            cast(Outbox, flaky),
            transport,
            Signer(KeyStore(key_dir)),
            config=WorkerConfig(batch_size=10, concurrency=4, poll_interval=0.2, backoff_max=1.0),
            brands=BRANDS,
        )
        run = asyncio.create_task(worker.run())
        try:
            while not smtp_server.messages:  # sends in flight: their outcomes wait
                await asyncio.sleep(0.01)
            flaky.outage(3.0)
            while await asyncio.to_thread(count, box, Status.SENT) < n:
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await run
            await transport.close()

    asyncio.run(go())

    assert flaky.refused >= 4  # the outage did hit the claimer and the recorder
    records = [box.get(i) for i in ids]
    assert all(r.status == Status.SENT for r in records)
    received = Counter(message_id_of(m.data) for m in smtp_server.messages)
    assert sorted(received.values()) == [1] * n  # recorded after the outage, not resent
    worker_logs = [r for r in caplog.records if r.name == "notifier.worker"]
    loud = [r.getMessage() for r in worker_logs if r.levelno >= logging.WARNING]
    assert len(loud) == 2, loud
    assert loud[0].startswith("worker ") and "database unavailable" in loud[0]
    assert [r.levelname for r in worker_logs if r.levelno >= logging.WARNING] == [
        "ERROR",
        "WARNING",
    ]
    assert "database available again after" in loud[1]
    quiet = [r for r in worker_logs if "failed again" in r.getMessage()]
    assert len(quiet) == flaky.refused - 1  # every other failure went to DEBUG
