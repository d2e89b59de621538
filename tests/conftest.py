"""Shared fixtures: settings on a temporary var dir, one pipeline per session, and an
outbox with the intake in front of it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings
from notifier.intake.accept import Intake, make_preparer
from notifier.outbox import Outbox, OutboxConfig, open_outbox


def postgres_url() -> str:
    """The test PostgreSQL (``NOTIFIER_TEST_DATABASE_URL``); without one, the test is
    skipped on a developer's machine and fails in CI."""
    url = os.environ.get("NOTIFIER_TEST_DATABASE_URL", "").strip()
    if url:
        return url
    message = (
        "NOTIFIER_TEST_DATABASE_URL is not set: the PostgreSQL variants need a server; "
        'start one with: export NOTIFIER_TEST_DATABASE_URL="$(scripts/start-postgres.sh)"'
    )
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A URL of the test PostgreSQL on a new, empty schema, dropped afterwards."""
    import psycopg

    base = postgres_url()
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class Box:
    """An outbox with the intake in front of it, as ``notifier serve`` runs them: tests
    accept raw events (``accept``, ``accept_batch``, ``accept_each``) and then work the
    outbox itself (every other attribute is the outbox's)."""

    def __init__(self, outbox: Outbox, intake: Intake, pipeline: Pipeline) -> None:
        self.outbox = outbox
        self.intake = intake
        self.pipeline = pipeline
        self.accept = intake.accept
        self.accept_batch = intake.accept_batch
        self.accept_each = intake.accept_each
        self.preparer = intake.preparer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)

    def close(self) -> None:
        self.intake.close()
        self.outbox.close()

    def __enter__(self) -> Box:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_box(
    settings: Settings,
    pipeline: Pipeline,
    config: OutboxConfig | None = None,
    **kwargs: Any,
) -> Box:
    config = config or OutboxConfig()
    outbox = open_outbox(settings, config, **kwargs)
    preparer = make_preparer(settings, pipeline, config.intake_processes)
    return Box(outbox, Intake(outbox, preparer, max_batch=config.max_batch), pipeline)


pytest_plugins: list[str] = []


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("var")
    return Settings(var_dir=var, secret_key=Secret("test-secret"))


@pytest.fixture(scope="session")
def pipeline(session_settings: Settings) -> Pipeline:
    return Pipeline(session_settings)


@pytest.fixture(scope="session")
def verified_pipeline(session_settings: Settings) -> Pipeline:
    """The shipped brands with their DNS verified: every brand sends as itself."""
    brands = BrandRegistry(session_settings.brands_dir, session_settings.platform_brand)
    for brand in brands.all():
        brands = brands.with_brand(brand.model_copy(update={"dns_verified": True}))
    return Pipeline(session_settings, brands)


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
pytest_plugins.append("tests.conftest_dns")
# live_box and processes, for tests that run real worker processes
pytest_plugins.append("tests.worker.support")
