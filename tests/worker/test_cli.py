"""``notifier send-test``, ``notifier worker`` and ``notifier queue`` against a real SMTP server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.outbox import Outbox, Status
from tests.smtpd import SMTPTestServer
from tests.test_outbox import FakeDNS, reminder
from tests.worker.support import message_id_of

# --- the CLI commands (mounted on a bare app here; the main CLI calls register) --------------


@pytest.fixture
def cli(
    box_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., Any]:
    import typer
    from typer.testing import CliRunner

    from notifier.cli.queue import register

    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """notifier (test mount)"""

    register(app)
    for key in [k for k in os.environ if k.startswith("NOTIFIER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(box_settings.var_dir))
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(box_settings.keys_path))
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "test-secret")
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", box_settings.database)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args))

    return invoke


def test_cli_send_test_prints_the_smtp_reply(
    cli: Callable[..., Any], smtp_server: SMTPTestServer, key_dir: Path, pipeline: Pipeline
) -> None:
    result = cli(
        "send-test",
        "--brand",
        "acme",
        "--event",
        "domain.renewal_reminder",
        "--lang",
        "sv",
        "--to",
        "ops@example.fi",
        "--smtp",
        smtp_server.url,
    )
    assert result.exit_code == 0, result.output
    assert "sent: 250 2.0.0 OK queued" in result.stdout
    [got] = smtp_server.messages
    assert got.rcpt_tos == ["ops@example.fi"]
    assert message_id_of(got.data) in result.stdout
    assert dkim.verify(got.data, dnsfunc=FakeDNS(key_dir, pipeline))


@pytest.mark.smtp_fault("RCPT", "550 5.1.1 No such user")
def test_cli_send_test_failures_exit_non_zero(
    cli: Callable[..., Any], smtp_server: SMTPTestServer
) -> None:
    base = ["send-test", "--brand", "acme", "--event", "domain.renewal_reminder"]
    refused = cli(*base, "--to", "gone@example.fi", "--smtp", smtp_server.url)
    assert refused.exit_code == 1 and "permanent: 550 5.1.1" in refused.stdout
    bad_to = cli(*base, "--to", "not an address", "--smtp", smtp_server.url)
    assert bad_to.exit_code == 2 and "--to" in bad_to.stderr
    bad_event = cli("send-test", "--brand", "acme", "--event", "domain.nope", "--to", "a@b.fi")
    assert bad_event.exit_code == 2 and "unknown event" in bad_event.stderr
    bad_brand = cli("send-test", "--brand", "nosuch", "--event", "domain.renewed", "--to", "a@b.fi")
    assert bad_brand.exit_code == 2 and "unknown brand" in bad_brand.stderr
    bad_url = cli(*base, "--to", "a@b.fi", "--smtp", "ftp://relay")
    assert bad_url.exit_code == 2 and "unsupported URL" in bad_url.stderr


def test_cli_worker_and_queue_commands(
    cli: Callable[..., Any], make_box: Callable[..., Outbox], smtp_server: SMTPTestServer
) -> None:
    import json

    box = make_box(clock=time.time)
    sent_id = box.accept(reminder(30)).id
    queued_raw = cli("queue", "show", str(sent_id), "--raw")
    assert queued_raw.exit_code == 0 and "not been sent yet" in queued_raw.stderr
    assert queued_raw.stdout_bytes == box.raw(sent_id).data

    worker = cli("worker", "--until-idle", "--smtp", smtp_server.url, "--poll", "0.05")
    assert worker.exit_code == 0, worker.output
    assert box.get(sent_id).status == Status.SENT

    shown = cli("queue", "show", str(sent_id), "--raw")
    assert shown.exit_code == 0
    [got] = smtp_server.messages
    assert shown.stdout_bytes == got.data  # exactly as sent
    human = cli("queue", "show", str(sent_id))
    assert human.exit_code == 0 and "status" in human.stdout and "250 2.0.0" in human.stdout
    as_json = json.loads(cli("queue", "show", str(sent_id), "--json").stdout)
    assert as_json["status"] == "sent" and as_json["attempt_log"][0]["code"] == 250

    stats = json.loads(cli("queue", "stats", "--json").stdout)
    assert stats["by_status"]["sent"] == 1 and stats["database"] == box.kind
    assert "sent       1" in cli("queue", "stats").stdout

    not_retryable = cli("queue", "retry", str(sent_id))
    assert not_retryable.exit_code == 1 and "only failed" in not_retryable.stderr
    missing = cli("queue", "retry", "999999")
    assert missing.exit_code == 1 and "no message 999999" in missing.stderr
    assert cli("queue", "retry").exit_code == 2
    assert cli("queue", "retry", "1", "--failed").exit_code == 2
    assert cli("queue", "show", "abc").exit_code == 2
    nothing = cli("queue", "retry", "--failed")
    assert nothing.exit_code == 0 and "queued 0 failed" in nothing.stdout
