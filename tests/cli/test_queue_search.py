"""``notifier queue list`` (search, newest first, with --domain) and ``queue retry
--failed --since``: what support and operators type."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from notifier.cli import app
from notifier.config import Settings
from notifier.delivery.transport import AttemptResult
from notifier.outbox import Status, open_outbox
from notifier.outbox.model import DAY, Delivery, NewMessage

runner = CliRunner()


def _new(i: int, domain: str) -> NewMessage:
    return NewMessage(
        brand="acme",
        sender_brand="acme",
        sign_brand="acme",
        event="domain.renewal_reminder",
        mandatory=True,
        domain=domain,
        recipient=f"u{i}@example.fi",
        language="fi",
        idempotency_key=None,
        request_hash="h",
        dedupe_key=None,
        message_id=f"<m{i}@example.net>",
        mail_from="bounce@example.net",
        rcpt_to=f"u{i}@example.fi",
        data=b"Subject: x\r\n\r\nx\r\n",
        data_sha256="0" * 64,
        held=False,
        hold_reason=None,
        cancels=(),
    )


def _fail(var: Path, ids: list[int], at: float) -> None:
    with open_outbox(Settings(var_dir=var), clock=lambda: at) as box:
        claims = [c for c in box.claim("w", 100) if c.id in ids]
        box.complete(
            "w",
            [
                Delivery(
                    id=c.id,
                    status=Status.FAILED,
                    reason="550",
                    attempt=AttemptResult("permanent", "mx", 550, "5.1.1", "no"),
                )
                for c in claims
            ],
        )
        box.release("w")


def test_queue_list_by_domain_and_pages(env_var_dir: Path) -> None:
    with open_outbox(Settings(var_dir=env_var_dir)) as box:
        box.store([_new(1, "example.fi"), _new(2, "other.fi"), _new(3, "example.fi")])
    out = runner.invoke(app, ["queue", "list", "--domain", "EXAMPLE.FI", "--json"])
    assert out.exit_code == 0, out.output
    assert [m["id"] for m in json.loads(out.stdout)] == [3, 1]
    out = runner.invoke(app, ["queue", "list", "--domain", "example.fi", "--before", "3"])
    assert out.exit_code == 0 and out.stdout.split()[0] == "1"
    assert "example.fi" in out.stdout and "u1@example.fi" in out.stdout
    bad = runner.invoke(app, ["queue", "list", "--domain", "exa mple.fi"])
    assert bad.exit_code == 2 and "--domain" in bad.stderr
    bad = runner.invoke(app, ["queue", "list", "--status", "lost"])
    assert bad.exit_code == 2 and "--status" in bad.stderr


def test_queue_retry_failed_since(env_var_dir: Path) -> None:
    import time

    now = time.time()
    with open_outbox(Settings(var_dir=env_var_dir), clock=lambda: now - 11 * DAY) as box:
        box.store([_new(1, "a.fi"), _new(2, "b.fi")])
    _fail(env_var_dir, [1], now - 10 * DAY)
    _fail(env_var_dir, [2], now - 3600)
    out = runner.invoke(app, ["queue", "retry", "--failed"])
    assert out.exit_code == 0, out.output
    assert "queued 1 failed message(s)" in out.stdout and "7d" in out.stdout
    out = runner.invoke(app, ["queue", "retry", "--failed", "--since", "30d"])
    assert "queued 1 failed message(s)" in out.stdout and "30d" in out.stdout
    for args in (
        ["--failed", "--since", "soon"],
        ["--failed", "--since", "0s"],
        ["1", "--since", "1d"],
    ):
        bad = runner.invoke(app, ["queue", "retry", *args])
        assert bad.exit_code == 2 and "--since" in bad.stderr, bad.output
