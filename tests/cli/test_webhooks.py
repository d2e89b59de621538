"""``notifier webhook …``: the secret printed once, list with state, disable, rotate,
replay; bad input exits 2 naming the option's field."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from notifier.cli import app
from notifier.config import Settings
from notifier.outbox import open_outbox
from tests.feedback.webhooks.conftest import emit

runner = CliRunner()


def test_add_list_disable_rotate_replay(env_var_dir: Path) -> None:
    out = runner.invoke(
        app, ["webhook", "add", "--url", "https://hooks.example.fi/x", "--events", "*", "--json"]
    )
    assert out.exit_code == 0, out.output
    created = json.loads(out.stdout)
    assert created["secret"].startswith("whsec_") and created["events"][0] == "message.sent"
    ident = str(created["id"])
    listed = runner.invoke(app, ["webhook", "list"])
    assert "enabled" in listed.stdout and "whsec_" not in listed.stdout
    assert runner.invoke(app, ["webhook", "disable", ident, "--reason", "moving"]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["webhook", "list", "--json"]).stdout)
    assert shown[0]["state"] == "disabled" and shown[0]["disabled_reason"] == "moving"
    rotated = runner.invoke(app, ["webhook", "rotate-secret", ident, "--grace", "2h"])
    assert rotated.exit_code == 0 and rotated.stdout.split()[1].startswith("whsec_")
    assert rotated.stdout.split()[1] != created["secret"]
    with open_outbox(Settings.load()) as box:
        emit(box, "message.failed")
    replay = runner.invoke(
        app, ["webhook", "replay", "--since", "1h", "--endpoint", ident, "--json"]
    )
    assert replay.exit_code == 0, replay.output
    assert json.loads(replay.stdout) == {"queued": 1}  # to a disabled one, named explicitly
    assert runner.invoke(app, ["webhook", "disable", "99"]).exit_code == 1


def test_bad_input_exit_2(env_var_dir: Path) -> None:
    out = runner.invoke(
        app, ["webhook", "add", "--url", "http://10.0.0.5/x", "--events", "message.opened"]
    )
    assert out.exit_code == 2
    assert "error: url:" in out.stderr and "error: events:" in out.stderr
    bad = runner.invoke(app, ["webhook", "replay", "--since", "yesterday-ish"])
    assert bad.exit_code == 2 and "--since" in bad.stderr
