"""``notifier db purge|vacuum`` on the default SQLite outbox."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app

runner = CliRunner()


def test_vacuum_converts_an_old_sqlite_database_and_purge_reports(env_var_dir: Path) -> None:
    result = runner.invoke(app, ["db", "purge"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("purged 0 message(s); database ")
    db = env_var_dir / "notifier.db"
    with sqlite3.connect(db) as conn:  # as a database from before incremental vacuum
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    conn.close()
    result = runner.invoke(app, ["db", "vacuum", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["bytes_after"] > 0 and figures["seconds"] >= 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    conn.close()


def test_db_commands_fail_cleanly_on_a_bad_database_url(
    env_var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", "mysql://nope")
    result = runner.invoke(app, ["db", "vacuum"])
    assert result.exit_code in (1, 2) and "error:" in result.output
    assert "Traceback" not in result.output
