"""``notifier serve``'s delivery worker in a process of its own (notifier.worker.process).

Real parts: ``notifier serve`` processes, a real SMTP server, SQLite; the worker
process is killed with a real ``kill -9``. Nothing asserts on milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from notifier.config import Secret, Settings
from notifier.worker.process import WorkerProcesses
from tests.api.conftest import serving
from tests.security.test_crashes import running
from tests.smtpd import SMTPTestServer
from tests.worker.support import message_id_of, post_reminder, serve_env, wait_for

STARTED = re.compile(r"worker process (\d+) started")


def started(log: Path) -> list[int]:
    return [int(pid) for pid in STARTED.findall(log.read_text(errors="replace"))]


def test_serve_restarts_its_worker_process_after_kill_9_and_stops_it_on_sigterm(
    tmp_path: Path, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    env, token = serve_env(tmp_path, key_dir, smtp_server.url)
    log = tmp_path / "serve.log"
    with serving(tmp_path, env) as url, httpx.Client(base_url=url) as client:

        def post_and_deliver(i: int) -> None:
            wanted = post_reminder(client, token, i)
            wait_for(
                lambda: wanted in {message_id_of(m.data) for m in smtp_server.messages},
                f"message {i} delivered",
                60,
            )

        wait_for(lambda: len(started(log)) == 1, "the worker process")
        first = started(log)[0]
        post_and_deliver(0)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(started(log)) == 2, "a new worker process", 30)
        text = log.read_text(errors="replace")
        assert f"worker process {first} exited (signal SIGKILL)" in text
        second = started(log)[1]
        assert second != first and not running(first)
        post_and_deliver(1)  # the API never stopped, and the new worker delivers
        assert client.get("/readyz").status_code == 200
    # serving() ended serve with SIGTERM: it told its worker, which finished and exited
    text = log.read_text(errors="replace")
    assert re.search(rf"worker \S+:{second}:\S+: stopping", text), text
    assert re.search(rf"worker \S+:{second}:\S+ stopped", text), text
    assert not running(second)
    assert len(smtp_server.messages) == 2


def test_a_worker_process_that_keeps_failing_is_restarted_ever_more_slowly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # its database cannot open (the var dir is a file): each child exits at once
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    settings = Settings(
        var_dir=tmp_path / "elsewhere",
        database_url=f"sqlite:///{blocker}/notifier.db",
        secret_key=Secret("test-secret"),
    )
    children = WorkerProcesses(settings, 1, first_delay=0.2, max_delay=0.8, grace=10)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(children.run(stop))
        for _ in range(600):
            if len(exits()) >= 4:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task

    def exits() -> list[float]:
        found = []
        for record in caplog.records:
            match = re.search(r"exit code 1\).*another in ([\d.]+) s", record.message)
            if match:
                found.append(float(match.group(1)))
        return found

    with caplog.at_level(logging.INFO, logger="notifier.worker"):
        asyncio.run(main())
    assert exits()[:4] == [0.2, 0.4, 0.8, 0.8]
    assert children.pids() == []  # none left running after stop
