"""``notifier inbound --processes N``: N real server processes share one port; one that
is killed is replaced while the others keep answering, SIGTERM stops them all, and
every report sent is stored (250 only after it is)."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.outbox import Status
from tests.conftest import open_box
from tests.conftest_smtp import free_port
from tests.feedback.support import crlf, sample, send_one
from tests.smtpd import SMTPTestServer


@pytest.fixture
def cli_env(env_var_dir: Path, key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(key_dir))
    return Settings(var_dir=env_var_dir, key_dir=key_dir)


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _wait(predicate: object, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _report(port: int, verp: str, dsn: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("mx.example.fi")
        code, reply = smtp.docmd("MAIL", "FROM:<>")
        assert code == 250
        code, reply = smtp.docmd("RCPT", f"TO:<{verp}>")
        assert code == 250, reply
        code, reply = smtp.data(dsn)
        assert code == 250, reply
        return reply.decode()


def test_processes_share_the_port_and_one_killed_is_replaced(
    cli_env: Settings,
    key_dir: Path,
    pipeline: Pipeline,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
) -> None:
    with open_box(cli_env, pipeline) as box:
        sent = [
            send_one(box, key_dir, smtp_server, brand=b) for b in ("acme", "kustwebb", "nordname")
        ]
    port = free_port()
    log = (tmp_path / "inbound.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "notifier.cli", "inbound", "--port", str(port), "--processes", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: len(_children(server.pid)) == 2 and _listening(port), "two servers")
        first = _children(server.pid)
        mid, message_id, verp = sent[0]
        dsn = crlf(sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id))
        assert "stored as report" in _report(port, verp, dsn)

        os.kill(min(first), signal.SIGKILL)
        _wait(lambda: len(_children(server.pid) - first) == 1, "a replacement")
        _wait(lambda: _listening(port), "listening")
        for _, message_id, verp in sent[1:]:
            dsn = crlf(sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id))
            for _ in range(4):  # several connections: whichever process takes them
                _report(port, verp, dsn)
        children = _children(server.pid)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    with open_box(cli_env, pipeline) as box:
        for mid, _, _ in sent:
            assert box.get(mid).status == Status.BOUNCED


def test_processes_refused_where_they_make_no_sense(cli_env: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["inbound", "--port", "0", "--processes", "2"])
    assert result.exit_code == 2 and "--processes needs a fixed --port" in result.stderr
    result = runner.invoke(app, ["inbound", "--stdin", "--processes", "2"], input=b"x")
    assert result.exit_code == 2 and "not --stdin" in result.stderr
    result = runner.invoke(app, ["inbound", "--processes", "0"])
    assert result.exit_code == 2
