"""Helpers shared by the worker tests: an in-process worker run until idle, and
``python -m notifier.worker`` processes (spawn, wait, stop)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.brands import BrandRegistry
from notifier.config import Secret, Settings
from notifier.delivery.relay import RelayTransport
from notifier.delivery.smtp import Timeouts
from notifier.outbox import Outbox, open_outbox
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.tokens import TokenStore
from notifier.worker.loop import Worker, WorkerConfig, WorkerStats
from tests.test_outbox import reminder

#: the shipped brands (the worker signs with their keys)
BRANDS = BrandRegistry(Settings().brands_dir, Settings().platform_brand)

fault = pytest.mark.smtp_fault
FAST = Timeouts(connect=2.0, command=2.0, data=2.0, data_block=2.0, final=5.0, quit=1.0)
MINUTE = 60.0


def message_id_of(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return str(msg["Message-ID"])


def run_worker(
    box: Outbox,
    key_dir: Path,
    url: str,
    *,
    signer: Signer | None = None,
    config: WorkerConfig | None = None,
    control: Callable[[Worker], Any] | None = None,
) -> WorkerStats:
    """One in-process worker until nothing is due (or ``control`` stops it)."""

    async def go() -> WorkerStats:
        transport = RelayTransport(url, timeouts=FAST, helo="worker.notifier.test")
        worker = Worker(
            box.outbox,
            transport,
            signer or Signer(KeyStore(key_dir)),
            config=config or WorkerConfig(poll_interval=0.01, flush_interval=0.01),
            brands=BRANDS,
        )
        watcher = asyncio.create_task(control(worker)) if control else None
        try:
            return await worker.run(until_idle=control is None)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await transport.close()

    return asyncio.run(go())


def spawn_worker(
    procs: list[subprocess.Popen[bytes]],
    settings: Settings,
    smtp_url: str,
    log: Path,
    *extra: str,
    **env: str,
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    environ.update(
        NOTIFIER_VAR_DIR=str(settings.var_dir),
        NOTIFIER_KEY_DIR=str(settings.keys_path),
        NOTIFIER_SECRET_KEY="test-secret",
        NOTIFIER_DATABASE_URL=settings.database,
        NOTIFIER_SMTP_URL=smtp_url,
        NOTIFIER_WORKER_POLL="0.05",
        # no periodic DNS checks of the shipped brands unless a test asks for them
        NOTIFIER_DNS_RECHECK="off",
    )
    environ.update(env)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier.worker", *extra],
            env=environ,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    procs.append(proc)
    return proc


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text(errors="replace")


# --- fixtures for tests with real worker processes (a plugin of tests/conftest.py) -----


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.fixture
def live_box(make_box: Callable[..., Outbox]) -> Outbox:
    """The outbox on the real clock, as the worker processes see it."""
    return make_box(clock=time.time)


def serve_env(tmp_path: Path, key_dir: Path, smtp_url: str) -> tuple[dict[str, str], str]:
    """The environment of a ``notifier serve`` on SQLite under ``tmp_path`` relaying to
    ``smtp_url`` (intake in its own process), and a token to post and read with."""
    settings = Settings(var_dir=tmp_path / "var", secret_key=Secret("test-secret"))
    with open_outbox(settings) as box:
        token = TokenStore(box).create(["events:write", "messages:read"], label="t")[1]
    env = {
        "NOTIFIER_VAR_DIR": str(tmp_path / "var"),
        "NOTIFIER_KEY_DIR": str(key_dir),
        "NOTIFIER_SECRET_KEY": "test-secret",
        "NOTIFIER_SMTP_URL": smtp_url,
        "NOTIFIER_INTAKE_PROCESSES": "0",
    }
    return env, token


def post_reminder(client: httpx.Client, token: str, i: int) -> str:
    """Post reminder ``i`` to a running ``notifier serve`` (a 202 expected); the
    Message-ID of its message, to look for at the SMTP server."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = client.post("/v1/events", json=reminder(i), headers=headers)
    assert answer.status_code == 202, answer.text
    message = client.get(f"/v1/messages/{answer.json()['id']}", headers=headers)
    return str(message.json()["message_id"])
