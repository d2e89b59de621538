"""The CLI's one contract: exit 2 for usage and validation, 1 at run time, 3 when DNS
could not answer; one ``error: …`` line per problem, never a traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from notifier.cli import COMMANDS, app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the settings a test gives: a var dir of its own (SQLite, captured mail)."""
    for key in [k for k in os.environ if k.startswith("NOTIFIER_")]:
        monkeypatch.delenv(key)
    var = tmp_path / "var"
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(var))
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "test-secret")
    monkeypatch.chdir(tmp_path)
    return var


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """A loopback UDP port that takes DNS queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _errors(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert lines, "no error message"
    assert "Traceback" not in stderr
    return lines


# --- 2: usage and validation ------------------------------------------------------------------

NOSUCH = ["--brand", "nosuch"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["render", *NOSUCH, "--event", "domain.renewed"], "brand"),
        (["send-test", *NOSUCH, "--event", "domain.renewed", "--to", "a@example.fi"], "--brand"),
        (["dkim", "keygen", *NOSUCH, "--selector", "s1"], "--brand"),
        (["dns", "check", *NOSUCH, "--nameserver", "127.0.0.1:9"], "--brand"),
        (["token", "create", "--scope", "events:write", *NOSUCH], "--brand"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else v,
)
def test_an_unknown_brand_is_a_validation_error_in_every_command(
    env: Path, args: list[str], field: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    [line] = _errors(result.stderr)
    assert line.startswith(f"error: {field}: unknown brand 'nosuch'; known brands: ")
    assert result.stdout == ""


def test_a_validation_error_names_each_field_on_its_own_line(env: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"domain": "esimerkki.fi"}))
    result = runner.invoke(
        app,
        [
            "render",
            "--brand",
            "acme",
            "--event",
            "domain.renewed",
            "--data",
            str(data),
        ],
    )
    assert result.exit_code == 2
    lines = _errors(result.stderr)
    assert all(line.startswith("error: ") for line in lines)
    fields = {line.split(": ")[1] for line in lines}
    assert {"data.renewed_at", "data.expires_at", "data.years"} <= fields
    assert len(lines) == len(fields)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dns", "check", "--brand", "acme", "--nameserver", "127.0.0.1:99999"], "out of range"),
        (["dns", "check", "--brand", "acme", "--timeout", "0"], "must be positive"),
        (["worker", "--batch", "0"], "--batch"),
        (["queue", "retry"], "give a message id or --failed"),
        (["render", "--event", "domain.renewed"], "--brand"),
    ],
)
def test_usage_errors_exit_2(env: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_bad_settings_exit_2(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_WORKER_BATCH", "lots")
    result = runner.invoke(app, ["worker", "--until-idle"])
    assert result.exit_code == 2
    [line] = _errors(result.stderr)
    assert line.startswith("error: NOTIFIER_WORKER_BATCH: ") and "integer" in line


# --- 1: runtime failures ----------------------------------------------------------------------


def test_a_storage_failure_exits_1_with_one_line(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{blocker}/outbox.db")
    for args in (["queue", "stats"], ["queue", "show", "1"], ["token", "list"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        [line] = _errors(result.stderr)
        assert line.startswith("error: ") and str(blocker) in line


def test_a_refusal_at_run_time_exits_1(env: Path) -> None:
    args = ["dkim", "keygen", "--brand", "acme", "--selector", "t2030"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    [line] = _errors(again.stderr)
    assert line.startswith("error: ") and "already exists" in line
    gone = runner.invoke(app, ["token", "revoke", "tok_nosuch"])
    assert gone.exit_code == 1 and _errors(gone.stderr) == ["error: no active token 'tok_nosuch'"]


# --- 3: DNS could not answer ------------------------------------------------------------------


def test_dns_check_exits_3_when_the_nameserver_does_not_answer(
    env: Path, silent_nameserver: str
) -> None:
    made = runner.invoke(app, ["dkim", "keygen", "--brand", "acme", "--selector", "acme2026a"])
    assert made.exit_code == 0, made.output  # the local key is there: only DNS is missing
    result = runner.invoke(
        app,
        ["dns", "check", "--brand", "acme", "--nameserver", silent_nameserver, "--timeout", "0.3"],
    )
    assert result.exit_code == 3, result.output
    assert "could not be made" in result.stdout
    assert "FAIL" not in result.stdout


def test_send_test_exits_3_when_the_mx_lookup_gets_no_answer(
    env: Path, servfail_server: str
) -> None:
    for brand, selector in (("acme", "acme2026a"), ("nordname", "nn2026a")):
        made = runner.invoke(app, ["dkim", "keygen", "--brand", brand, "--selector", selector])
        assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        [
            "send-test",
            "--brand",
            "acme",
            "--event",
            "domain.renewed",
            "--to",
            "aino@example.fi",
            "--smtp",
            f"direct://?nameserver={servfail_server}",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "transient: 4.4.3" in result.stdout and "SERVFAIL" in result.stdout


# --- --version, help, registration -------------------------------------------------------------


def test_version_comes_from_the_package_metadata() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"notifier {version('notifier')}\n"


def _paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every group and command under ``command``, as argument paths."""
    yield path
    for name, child in getattr(command, "commands", {}).items():
        yield from _paths(child, (*path, name))


def test_help_reads_naturally_everywhere() -> None:
    every = list(_paths(typer.main.get_command(app)))
    assert {("dns", "check"), ("token", "create"), ("render",), ("queue", "show")} <= set(every)
    for path in every:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        for noise in ("<str>", "<bool>", "<int>", "<float>", "<path>", "range>"):
            assert noise not in result.stdout, (path, noise)
        assert not re.search(r"\{[A-Z_]+\}", result.stdout), path  # typer's {ARG}
    render = runner.invoke(app, ["render", "--help"]).stdout
    assert "--brand BRAND" in render and "--data FILE" in render and "--to ADDRESS" in render
    assert "show [OPTIONS] MESSAGE_ID" in runner.invoke(app, ["queue", "show", "--help"]).stdout


def test_every_command_module_is_registered() -> None:
    """A module beside ``common`` in notifier/cli is a command module: listed in COMMANDS."""
    import notifier.cli

    here = Path(notifier.cli.__file__).parent
    modules = {p.stem for p in here.glob("*.py")} - {"__init__", "__main__", "common"}
    assert modules == set(COMMANDS)
    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"render", "worker", "serve", "token", "dkim", "dns", "queue", "templates"} <= names


# --- output placement ------------------------------------------------------------------------


def test_worker_until_idle_prints_its_summary_on_stdout(env: Path, tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    environ.update(NOTIFIER_VAR_DIR=str(env), NOTIFIER_SECRET_KEY="test-secret")
    proc = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "worker", "--until-idle", "--poll", "0.05"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()  # nothing else on stdout: logs are on stderr
    summary = json.loads(line)
    assert summary["sent"] == 0 and summary["failed"] == 0 and "claimed" in summary
    assert "notifier.worker" in proc.stderr  # the log lines
