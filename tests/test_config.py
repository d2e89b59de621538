"""Settings: one model for toml and environment, unknown keys refused, secrets hidden;
the signing secret made on first use is one secret for every process."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from notifier.config import Secret, Settings, load_with_sources, redacted
from notifier.errors import ConfigError


def _secret(var_dir: str) -> bytes:
    return Settings(var_dir=Path(var_dir)).secret()


def test_the_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    first = settings.secret()
    assert len(first) == 64 and first == settings.secret()
    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no leftovers
    assert Settings(var_dir=tmp_path / "var", secret_key=Secret("set")).secret() == b"set"


def test_processes_starting_together_agree_on_the_secret(tmp_path: Path) -> None:
    # the API and its intake workers all sign unsubscribe links: one secret for all
    var = str(tmp_path / "var")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        secrets = pool.map(_secret, [var] * 16)
    assert len(set(secrets)) == 1 and len(secrets[0]) == 64
    assert (tmp_path / "var" / "secret.key").read_bytes().strip() == secrets[0]


def test_toml_and_environment_take_the_same_keys(tmp_path: Path) -> None:
    toml = tmp_path / "notifier.toml"
    toml.write_text('retry_delays = "1m,2m"\nworker_poll = "2s"\nlease = 600\n')
    from_file = Settings.load({}, config=toml)
    from_env = Settings.load(
        {"NOTIFIER_RETRY_DELAYS": "1m,2m", "NOTIFIER_WORKER_POLL": "2s", "NOTIFIER_LEASE": "600"}
    )
    for s in (from_file, from_env):
        assert s.retry_delays == (60.0, 120.0) and s.worker_poll == 2.0 and s.lease == 600.0
        assert s.outbox_config().retry_delays == (60.0, 120.0)
        assert s.worker_config().poll_interval == 2.0
    # the environment wins over the file, and says where each value came from
    settings, sources = load_with_sources({"NOTIFIER_LEASE": "20m"}, config=toml)
    assert settings.lease == 1200.0 and sources["lease"] == "env NOTIFIER_LEASE"
    assert sources["retry_delays"] == str(toml) and "var_dir" not in sources


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NOTIFIER_SMTP_ULR; did you mean NOTIFIER_SMTP_URL"):
        Settings.load({"NOTIFIER_SMTP_ULR": "smtp://x"})
    toml = tmp_path / "notifier.toml"
    toml.write_text("retry_delay = '1m'\n")
    with pytest.raises(ConfigError, match="'retry_delay'; did you mean retry_delays"):
        Settings.load({}, config=toml)
    # tools' own variables are not settings
    Settings.load({"NOTIFIER_TEST_DATABASE_URL": "x", "NOTIFIER_CONFIG": str(toml) + ".none"})


def test_bad_values_name_the_setting_and_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^NOTIFIER_LEASE: 'soon' is not a duration"):
        Settings.load({"NOTIFIER_LEASE": "soon"})
    with pytest.raises(ConfigError, match=r"^NOTIFIER_MAX_BATCH: .*greater than or equal to 1"):
        Settings.load({"NOTIFIER_MAX_BATCH": "0"})


def test_secrets_are_hidden(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, secret_key=Secret("hunter2"))
    assert "hunter2" not in repr(settings)
    assert redacted("secret_key", settings.secret_key) == "**********"
    url = "postgresql://notifier:pa55@db.example:5432/notifier"
    assert (
        redacted("database_url", url) == "postgresql://notifier:**********@db.example:5432/notifier"
    )


def test_config_command_shows_values_and_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from notifier.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "hunter2")
    monkeypatch.setenv("NOTIFIER_LEASE", "20m")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["lease"]["value"] == 1200.0 and rows["lease"]["source"] == "env NOTIFIER_LEASE"
    assert rows["secret_key"]["value"] == "**********" and "hunter2" not in result.stdout
    assert rows["retry_delays"]["source"] == "default" and rows["lease"]["description"]
    monkeypatch.setenv("NOTIFIER_SMTP_ULR", "x")
    bad = CliRunner().invoke(app, ["config"])
    assert bad.exit_code == 2 and "did you mean NOTIFIER_SMTP_URL" in bad.stderr
