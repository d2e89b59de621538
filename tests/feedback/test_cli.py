"""``notifier inbound --stdin`` (an MTA's pipe) and ``notifier inbound list``: exit 0
once stored whatever the message was, non-zero only when it could not be stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.outbox import Status
from tests.conftest import open_box
from tests.feedback.support import crlf, sample, send_one
from tests.smtpd import SMTPTestServer

runner = CliRunner()


@pytest.fixture
def cli_env(env_var_dir: Path, key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(key_dir))
    for name in ("ORIGINAL_RECIPIENT", "RECIPIENT", "SENDER"):
        monkeypatch.delenv(name, raising=False)
    return Settings(var_dir=env_var_dir, key_dir=key_dir)


def _inbound(*args: str, data: bytes = b"") -> tuple[int, str, str]:
    result = runner.invoke(app, ["inbound", *args], input=data)
    return result.exit_code, result.stdout, result.stderr


def test_stdin_bounce_from_a_pipe(
    cli_env: Settings,
    key_dir: Path,
    pipeline: Pipeline,
    smtp_server: SMTPTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open_box(cli_env, pipeline) as box:
        mid, message_id, verp = send_one(box, key_dir, smtp_server)
    monkeypatch.setenv("ORIGINAL_RECIPIENT", verp)  # as Postfix's local(8) sets it
    dsn = crlf(sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id))
    code, out, _ = _inbound("--stdin", data=dsn)
    assert code == 0, out
    assert "hard_bounce, bounced+suppressed" in out
    with open_box(cli_env, pipeline) as box:
        assert box.get(mid).status == Status.BOUNCED
        [report] = box.message_reports(mid)
        assert box.report_raw(report.id) == dsn


def test_stdin_unparsable_is_stored_and_listed(cli_env: Settings) -> None:
    code, out, _ = _inbound("--stdin", "--rcpt", "bounces@bounce.acme.fi", data=b"junk\n")
    assert code == 0 and "unparsable, unmatched" in out
    code, out, _ = _inbound("list", "--unmatched", "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert (listed["kind"], listed["matched"], listed["rcpt"]) == (
        "unparsable",
        False,
        "bounces@bounce.acme.fi",
    )
    code, out, _ = _inbound("list")
    assert code == 0 and "unparsable" in out and "unmatched" in out


def test_stdin_forged_is_dropped_but_exits_0(cli_env: Settings) -> None:
    forged = "b-1-aaaaaaaaaaaaaaaa@bounce.acme.fi"
    code, _, err = _inbound("--stdin", "--rcpt", forged, data=sample("postfix_dsn_550_5.1.1.eml"))
    assert code == 0 and "forged" in err
    code, out, _ = _inbound("list", "--json")
    assert json.loads(out) == []


def test_stdin_exits_non_zero_when_it_cannot_store(
    cli_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database's directory should be")
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{blocker}/notifier.db")
    code, _, err = _inbound("--stdin", data=sample("postfix_dsn_550_5.1.1.eml"))
    assert code == 1 and "error:" in err


def test_stdin_over_the_size_limit_exits_non_zero(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_INBOUND_MAX_SIZE", "1024")
    code, _, err = _inbound("--stdin", data=b"x" * 2048)
    assert code == 1 and "inbound_max_size" in err
