"""The start-up heap is frozen out of the collector's full passes in the long-running
processes (``notifier serve``, its intake processes, the workers)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import heap
from notifier.api import create_app
from notifier.config import Secret, Settings
from notifier.worker.loop import serve
from tests.api.conftest import TestClient


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_collects_then_freezes_what_is_left(unfrozen: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage in a cycle: collected, not frozen
    kept = [Cycle() for _ in range(10)]
    frozen = heap.settle()
    assert frozen == gc.get_freeze_count() > len(kept)
    assert gc.collect() == 0  # nothing left over for the next pass


def test_the_server_and_the_worker_settle_once_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "settle", lambda: calls.append("settled") or 0)
    settings = Settings(var_dir=tmp_path / "var", secret_key=Secret("heap"))
    with TestClient(create_app(settings, run_worker=False)) as client:
        assert client.get("/healthz").status_code == 200
        assert calls == ["settled"]
    stats = asyncio.run(serve(settings, until_idle=True, signals=()))
    assert stats.claimed == 0 and calls == ["settled", "settled"]
