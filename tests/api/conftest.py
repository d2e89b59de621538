"""Fixtures for the HTTP API: an app on a temporary database, tokens of every kind."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from notifier.api import create_app
from notifier.config import Settings

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; httpx still works (tests run with -W error).
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


@dataclass
class Tokens:
    admin: str
    writer: str  # events:write, every brand (the registry)
    reader: str  # messages:read, every brand (support tools)
    acme: str  # reseller acme: events:write + messages:read
    kustwebb: str  # reseller kustwebb: events:write + messages:read

    def h(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, name)}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(client: TestClient) -> Tokens:
    store = client.app.state.tokens  # type: ignore[attr-defined]
    return Tokens(
        admin=store.create(["admin"], label="ops")[1],
        writer=store.create(["events:write"], label="registry")[1],
        reader=store.create(["messages:read"], label="support")[1],
        acme=store.create(["events:write", "messages:read"], brand="acme")[1],
        kustwebb=store.create(["events:write", "messages:read"], brand="kustwebb")[1],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    """``notifier serve`` in a new process."""
    return [sys.executable, "-m", "notifier.cli", "serve"]


@contextlib.contextmanager
def serving(root: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``notifier serve`` on a free loopback port with ``env`` (over this process's,
    less the database and SMTP URLs: SQLite under the var dir, mail captured); yields
    its base URL once ``/readyz`` answers 200, and stops it after."""
    port = free_port()
    # no periodic DNS checks of the shipped brands unless a test asks for them
    full = {**os.environ, "NOTIFIER_DNS_RECHECK": "off", **env}
    for name in ("NOTIFIER_SMTP_URL", "NOTIFIER_DATABASE_URL"):
        if name not in env:
            full.pop(name, None)
    log_path = root / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*serve_command(), "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("notifier serve did not become ready")
        if proc.poll() is not None:
            pytest.fail(f"notifier serve exited: {log_path.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        log.close()
