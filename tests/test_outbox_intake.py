"""Intake on every core: large batches validated and rendered in worker processes.

Real ``spawn``ed worker processes on a real SQLite outbox; the fault injected is a
worker killed with SIGKILL.
"""

from __future__ import annotations

import email
import email.policy
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings
from notifier.errors import (
    FieldError,
    HeaderInjection,
    NotifierError,
    RenderError,
    TransientDeliveryError,
    UnknownEvent,
    ValidationError,
)
from notifier.intake.preparer import InlinePreparer, PoolPreparer
from notifier.outbox import Accepted, Outbox, OutboxConfig
from tests.conftest import open_box

from .test_outbox import reminder


def _settings(tmp_path: Path, name: str) -> Settings:
    return Settings(
        var_dir=tmp_path / name,
        secret_key=Secret("test-secret"),
        database_url=f"sqlite:///{tmp_path / name / 'outbox.db'}",
    )


@pytest.fixture
def pool_box(tmp_path: Path) -> Iterator[Outbox]:
    settings = _settings(tmp_path, "pool")
    box = open_box(settings, Pipeline(settings), OutboxConfig(intake_processes=2))
    yield box
    box.close()


@pytest.fixture
def inline_box(tmp_path: Path) -> Iterator[Outbox]:
    settings = _settings(tmp_path, "inline")
    box = open_box(settings, Pipeline(settings), OutboxConfig())
    yield box
    box.close()


def _mixed_batch() -> list[dict[str, Any]]:
    """60 events over both brands and three languages, with bad ones among them."""
    items = [
        reminder(i, brand=("acme", "kustwebb")[i % 2], lang=("fi", "sv", "en")[i % 3])
        for i in range(60)
    ]
    del items[7]["data"]["expires_at"]
    items[19]["event"] = "domain.no_such_event"
    items[33]["recipient"]["email"] = "not-an-address"
    items[48]["recipient"]["name"] = "Aino\r\nBcc: victim@example.com"
    return items


def _parts(box: Outbox, message_id: int) -> tuple[str, str, str]:
    msg = email.message_from_bytes(box.raw(message_id).data, policy=email.policy.default)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return str(msg["Subject"]), text.get_content(), html.get_content()


def _summary(result: Accepted | NotifierError) -> Any:
    if isinstance(result, ValidationError):
        return ("invalid", [(e.loc, e.message) for e in result.errors])
    if isinstance(result, NotifierError):
        return (type(result).__name__, str(result), getattr(result, "__notes__", []))
    return ("ok", result.status, result.language, result.duplicate)


def test_a_batch_prepared_in_worker_processes_is_the_batch_prepared_inline(
    pool_box: Outbox, inline_box: Outbox
) -> None:
    assert isinstance(pool_box.preparer, PoolPreparer)
    pids = pool_box.preparer.start()
    assert pids and os.getpid() not in pids
    pooled = pool_box.accept_each(_mixed_batch())
    inline = inline_box.accept_each(_mixed_batch())
    assert [_summary(r) for r in pooled] == [_summary(r) for r in inline]
    bad = {i for i, r in enumerate(pooled) if isinstance(r, NotifierError)}
    assert bad == {7, 19, 33, 48}
    assert isinstance(pooled[19], UnknownEvent) and pooled[19].name == "domain.no_such_event"
    # the same mail, word for word (only Message-ID, Date and boundary differ)
    for a, b in zip(pooled, inline, strict=True):
        if isinstance(a, Accepted) and isinstance(b, Accepted):
            assert _parts(pool_box, a.id) == _parts(inline_box, b.id)
    # the workers really did the work
    assert pool_box.preparer._pool is not None
    assert pool_box.preparer.start() == pids


def test_a_lone_event_is_prepared_in_the_workers_too(
    pool_box: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit of single events (even of one) renders in the workers: this
    process's interpreter also parses the requests and runs serve's delivery worker."""
    assert isinstance(pool_box.preparer, PoolPreparer)

    def not_here(*_: Any) -> Any:
        raise AssertionError("prepared in the API's process")

    monkeypatch.setattr(InlinePreparer, "prepare", not_here)  # this process only
    results = pool_box.accept_each([reminder(0)])
    assert [_summary(r) for r in results] == [("ok", "queued", "fi", False)]
    assert pool_box.preparer._pool is not None
    results = pool_box.accept_each([reminder(i) for i in range(1, 4)])
    assert all(isinstance(r, Accepted) for r in results)


def test_an_atomic_batch_in_workers_still_rejects_as_a_whole(pool_box: Outbox) -> None:
    items = [reminder(i) for i in range(40)]
    items[25]["recipient"]["email"] = "nobody"
    with pytest.raises(ValidationError) as info:
        pool_box.accept_batch(items)
    assert info.value.errors[0].loc.startswith("events[25].recipient.email")
    assert pool_box.stats()["total"] == 0


def _wait_dead(pid: int) -> None:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a zombie still answers kill(0): the pool's manager thread reaps it
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not die")


def test_a_killed_worker_costs_speed_never_an_event(
    pool_box: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    preparer = pool_box.preparer
    assert isinstance(preparer, PoolPreparer)
    pids = preparer.start()
    os.kill(pids[0], signal.SIGKILL)
    _wait_dead(pids[0])
    first = pool_box.accept_each([reminder(i) for i in range(40)])
    assert all(isinstance(r, Accepted) and not r.duplicate for r in first)
    assert "preparing in-process" in caplog.text
    # for a while, batches are prepared in-process (no spawn per batch if it keeps failing)
    second = pool_box.accept_each([reminder(i) for i in range(100, 140)])
    assert all(isinstance(r, Accepted) and not r.duplicate for r in second)
    assert preparer._pool is None
    # then the next large batch gets a new pool
    preparer._retry_at = 0.0  # as if the pause were over
    third = pool_box.accept_each([reminder(i) for i in range(200, 240)])
    assert all(isinstance(r, Accepted) and not r.duplicate for r in third)
    assert preparer._pool is not None
    assert not set(preparer.start()) & set(pids)
    assert pool_box.stats()["total"] == 120


def test_inline_preparer_is_the_default() -> None:
    assert OutboxConfig().intake_processes == 0
    assert Settings.load({"NOTIFIER_INTAKE_PROCESSES": "3"}).outbox_config().intake_processes == 3
    auto = Settings.load({"NOTIFIER_INTAKE_PROCESSES": "auto"}).outbox_config()
    cores = len(os.sched_getaffinity(0))
    assert auto.intake_processes == (cores if cores > 1 else 0)
    with pytest.raises(NotifierError, match="NOTIFIER_INTAKE_PROCESSES"):
        Settings.load({"NOTIFIER_INTAKE_PROCESSES": "many"}).outbox_config()
    with pytest.raises(NotifierError):
        OutboxConfig(intake_processes=-1)


def test_inline_preparer_starts_nothing(pipeline: Pipeline) -> None:
    assert InlinePreparer(pipeline).start() == []


@pytest.mark.parametrize(
    "exc",
    [
        ValidationError([FieldError("events[3].data.expires_at", "field required")]),
        UnknownEvent("x.y", ["a.b", "c.d"], "events[0].event"),
        RenderError("template exploded"),
        HeaderInjection("subject: line break"),
        TransientDeliveryError("451 later", code=451, enhanced="4.3.0", host="mx"),
    ],
)
def test_errors_cross_process_boundaries_whole(exc: NotifierError) -> None:
    exc.add_note("while rendering events[3]")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc) and back.__dict__.keys() == exc.__dict__.keys()
    assert back.__notes__ == ["while rendering events[3]"]
    if isinstance(exc, ValidationError):
        assert isinstance(back, ValidationError)
        assert [(e.loc, e.message) for e in back.errors] == [(e.loc, e.message) for e in exc.errors]
    if isinstance(exc, TransientDeliveryError):
        assert isinstance(back, TransientDeliveryError)
        assert (back.code, back.enhanced, back.host) == (451, "4.3.0", "mx")


def test_a_pool_that_cannot_start_costs_speed_never_an_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from notifier.config import PROJECT_ROOT

    brands = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    settings = Settings(
        var_dir=tmp_path / "var",
        secret_key=Secret("test-secret"),
        brands_dir=brands,
        database_url=f"sqlite:///{tmp_path / 'outbox.db'}",
    )
    box = open_box(settings, Pipeline(settings), OutboxConfig(intake_processes=2))
    try:
        shutil.rmtree(brands)  # the workers cannot load the brands: each one fails to start
        assert box.preparer.start() == []
        assert "did not start" in caplog.text
        results = box.accept_each([reminder(i) for i in range(40)])
        assert all(isinstance(r, Accepted) for r in results)
        assert box.preparer._pool is None  # not tried again at once
        assert box.stats()["total"] == 40
    finally:
        box.close()
