"""Settings: the signing secret made on first use is one secret for every process."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from notifier.config import Secret, Settings


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
