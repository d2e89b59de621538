"""Shared fixtures: settings on a temporary var dir, one pipeline per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings

pytest_plugins: list[str] = []


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("var")
    return Settings(var_dir=var, secret_key=Secret("test-secret"))


@pytest.fixture(scope="session")
def pipeline(session_settings: Settings) -> Pipeline:
    return Pipeline(session_settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", secret_key=Secret("test-secret"))


@pytest.fixture
def env_var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point NOTIFIER_VAR_DIR at a temp dir for CLI tests."""
    var = tmp_path / "var"
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(var))
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "test-secret")
    monkeypatch.chdir(tmp_path)
    yield var


pytest_plugins.append("tests.conftest_smtp")
