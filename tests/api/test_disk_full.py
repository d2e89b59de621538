"""Disk full during intake: the API answers 503 with Retry-After and nothing is
half-written. A real small filesystem (tmpfs, mounted by the test as root) fills up."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.api import create_app
from notifier.config import Secret, Settings
from tests.api.conftest import TestClient
from tests.api.test_api import event


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {result.stderr.strip()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_503_and_nothing_is_half_written(small_disk: Path) -> None:
    settings = Settings(var_dir=small_disk / "var", secret_key=Secret("disk-full"))
    app = create_app(settings, run_worker=False)
    with TestClient(app) as c:
        secret = app.state.tokens.create(["admin"])[1]
        h = {"Authorization": f"Bearer {secret}"}
        assert c.post("/v1/events", json=event(key="first"), headers=h).status_code == 202
        # leave only a little room, then post until the database cannot grow
        filler = small_disk / "filler"
        free = shutil.disk_usage(small_disk).free
        filler.write_bytes(b"\0" * max(free - 96 * 1024, 0))
        accepted: list[str] = []
        refused: dict[str, Any] | None = None
        for i in range(400):
            key = f"k{i}"
            r = c.post("/v1/events", json=event(key=key), headers=h)
            if r.status_code == 202:
                accepted.append(key)
                continue
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"]
            assert r.json()["error"] == "unavailable"
            refused = {"key": key}
            break
        assert refused is not None, "the disk never filled up"
        # a batch is refused whole, too
        r = c.post(
            "/v1/events/batch",
            json={"events": [event(key="b1"), event(key="b2")]},
            headers=h,
        )
        assert r.status_code == 503

        filler.unlink()  # room again
        # what was accepted is all there; the refused event was not stored at all:
        # posting it again creates it (202), it is not a duplicate (200)
        items: list[dict[str, Any]] = []
        url = "/v1/messages?limit=200"
        while url:
            page = c.get(url, headers=h).json()
            items += page["items"]
            url = (
                f"/v1/messages?limit=200&cursor={page['next_cursor']}"
                if page.get("next_cursor")
                else ""
            )
        assert len(items) == 1 + len(accepted)
        assert c.post("/v1/events", json=event(key=refused["key"]), headers=h).status_code == 202
        assert c.post("/v1/events", json=event(key="b1"), headers=h).status_code == 202
        assert c.post("/v1/events", json=event(key=accepted[-1]), headers=h).status_code == 200
    with sqlite3.connect(settings.var_dir / "notifier.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
