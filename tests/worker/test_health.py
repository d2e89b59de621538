"""How a worker reports a database outage: one line when it starts, one when it ends."""

from __future__ import annotations

import logging

import pytest

from notifier.worker.health import Backoff, DatabaseHealth


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "notifier.worker" and r.levelno >= logging.WARNING
    ]


def test_only_recording_fails_one_outage_not_one_per_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Claims still work while every recording fails (e.g. the outcome table is locked
    or full): before, each successful claim logged a recovery and the next failed
    recording a new outage, every few seconds for as long as it lasted."""
    now = [0.0]
    health = DatabaseHealth("w1", clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="notifier.worker")
    for _ in range(5):
        health.failed("recording outcomes", OSError("disk full"))
        now[0] += 1
        health.ok("claim")
    assert health.down
    assert [level for level, _ in _lines(caplog)] == ["ERROR"]
    health.ok("recording outcomes")
    assert not health.down
    lines = _lines(caplog)
    assert [level for level, _ in lines] == ["ERROR", "WARNING"]
    assert "after 5.0 s (5 failed call(s))" in lines[1][1]


def test_an_outage_ends_when_every_failing_kind_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = DatabaseHealth("w1", clock=lambda: 0.0)
    health.failed("claim", OSError("down"))
    health.failed("recording outcomes", OSError("down"))
    health.ok("claim")
    assert health.down
    health.ok("recording outcomes")
    assert not health.down
    health.failed("claim", OSError("down"))
    health.ok()  # no kind named: everything works again
    assert not health.down
    assert [level for level, _ in _lines(caplog)] == ["ERROR", "WARNING", "ERROR", "WARNING"]


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    wait = Backoff(0.5, 3.0)
    assert [wait.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    wait.reset()
    assert wait.next() == 0.5
