"""Issue 10 §1: one bad event never fails other callers' good events.

An unexpected exception (here a ``KeyError`` injected into the render of one recipient's
event) while preparing one event fails that event alone: its caller gets a 500, or its
batch item an ``internal_error``, and every other event — of other brands too, sharing
the same group commit or batch — is stored. Over real HTTP (uvicorn on loopback) to
``create_app``, on SQLite and PostgreSQL, in-process and in the intake process pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from notifier import events as catalog
from notifier.api import create_app, v1
from notifier.compose.render import Renderer
from notifier.config import Secret, Settings
from notifier.errors import InternalError, StorageError
from notifier.intake import preparer
from notifier.intake.group_commit import GroupCommit
from notifier.outbox import OutboxConfig
from tests.conftest import postgres_schema

RENEWAL = "domain.renewal_reminder"
#: the recipient whose event's render raises
VICTIM = "bad.render@example.fi"
INTERNAL = {"error": "internal_error", "detail": "internal error"}


# --- the fault --------------------------------------------------------------------------------


def _faulty(original: Any) -> Any:
    """``Renderer.render`` that raises ``KeyError`` for :data:`VICTIM`'s events only: a
    bug that no error class anticipates."""

    def render(self: Renderer, event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.recipient.email == VICTIM:
            raise KeyError("injected")
        return original(self, event, *args, **kwargs)

    return render


def _faulty_worker_init(*args: Any) -> None:
    """The intake worker processes' initializer, with the fault installed first (the
    processes are spawned: they import this module by name)."""
    Renderer.render = _faulty(Renderer.render)  # type: ignore[method-assign]
    preparer._init_worker(*args)


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Renderer, "render", _faulty(Renderer.render))
    monkeypatch.setattr(preparer, "_init_worker", _faulty_worker_init)


# --- databases, the server ------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings on SQLite, or on a fresh schema of the test PostgreSQL."""
    var = tmp_path / "var"
    if request.param == "sqlite":
        yield Settings(var_dir=var, secret_key=Secret("test-secret"))
        return
    with postgres_schema("iso") as url:
        yield Settings(var_dir=var, secret_key=Secret("test-secret"), database_url=url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn on a loopback port, in a thread; its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def event(brand: str, email: str, key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": RENEWAL,
        "brand": brand,
        "recipient": {"email": email, "name": "Aino Virtanen"},
        "data": copy.deepcopy(dict(catalog.CATALOG[RENEWAL].sample)),
    }
    if key:
        body["idempotency_key"] = key
    return body


def _goods(n: int) -> list[dict[str, Any]]:
    brands = ("acme", "kustwebb")
    return [event(brands[i % 2], f"good{i}@example.fi", f"good-{i}") for i in range(n)]


def _stored(app: Any) -> list[str]:
    box = app.state.store.outbox
    with box.transaction(write=False) as cur:
        rows = cur.execute("SELECT recipient FROM outbox_messages ORDER BY id").fetchall()
    return sorted(str(r[0]) for r in rows)


def _pool_used(app: Any, processes: int) -> bool:
    """Whether the intake prepared in its worker processes (a pool that failed falls
    back to in-process, which would prove nothing about the pool)."""
    prepared = app.state.store.intake.preparer
    if not processes:
        return not isinstance(prepared, preparer.PoolPreparer)
    return bool(prepared._pool is not None and prepared._pool._processes and not prepared._retry_at)


def _admin(app: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.tokens.create(['admin'])[1]}"}


# --- the proof ----------------------------------------------------------------------------------

PROCESSES = [pytest.param(0, id="inline"), pytest.param(2, id="pool")]


@pytest.mark.parametrize("processes", PROCESSES)
def test_a_bug_in_one_single_event_fails_it_alone_in_a_shared_group_commit(
    db_settings: Settings, fault: None, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """Two openers hold both group-commit tasks; the others (two brands, and the one
    that raises) are posted concurrently meanwhile, so they share one group — the
    test checks that they did — which the pool prepares when ``processes`` is set."""
    app = create_app(db_settings, outbox_config=OutboxConfig(intake_processes=processes))
    store = app.state.store
    openers, rest = _goods(2), _goods(24)[2:]
    rest.insert(11, event("acme", VICTIM, "victim"))
    total = len(openers) + len(rest)
    groups: list[list[str]] = []
    entered = threading.Semaphore(0)
    gate = threading.Event()
    all_in = threading.Event()
    submitted: list[Any] = []
    original_accept = store._accept_batch
    original_submit = GroupCommit.submit

    def accept(raws: list[Any]) -> Any:
        groups.append([r["recipient"]["email"] for r in raws])
        entered.release()
        assert gate.wait(60), "the gate never opened"
        return original_accept(raws)

    async def submit(self: GroupCommit[Any], raw: Any) -> Any:
        submitted.append(raw)
        if len(submitted) == total:
            all_in.set()
        return await original_submit(self, raw)

    monkeypatch.setattr(store, "_accept_batch", accept)
    monkeypatch.setattr(GroupCommit, "submit", submit)

    async def post_all(url: str, h: dict[str, str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            first = []
            for body in openers:  # each group task holds one opener, blocked at the gate
                first.append(asyncio.create_task(c.post("/v1/events", json=body, headers=h)))
                assert await asyncio.to_thread(entered.acquire, True, 60)
            others = [asyncio.create_task(c.post("/v1/events", json=b, headers=h)) for b in rest]
            assert await asyncio.to_thread(all_in.wait, 60)
            for _ in range(6000):  # ... and queued
                if store._committer.queue.qsize() == len(rest):
                    break
                await asyncio.sleep(0.01)
            gate.set()
            return list(await asyncio.gather(*first, *others))

    with serving(app) as url:
        responses = asyncio.run(post_all(url, _admin(app)))
        stored = _stored(app)
        assert _pool_used(app, processes)
    codes = {b["recipient"]["email"]: r for b, r in zip(openers + rest, responses, strict=True)}
    victim = codes.pop(VICTIM)
    assert victim.status_code == 500 and victim.json() == INTERNAL
    assert {e: r.status_code for e, r in codes.items()} == dict.fromkeys(codes, 202)
    assert stored == sorted(codes)
    shared = [g for g in groups if VICTIM in g]
    assert len(shared) == 1 and len(shared[0]) == len(rest)  # it shared its group


@pytest.mark.parametrize("processes", PROCESSES)
def test_a_bug_in_one_batch_item_is_that_items_error(
    db_settings: Settings, fault: None, processes: int
) -> None:
    app = create_app(db_settings, outbox_config=OutboxConfig(intake_processes=processes))
    items = _goods(24)
    items.insert(7, event("kustwebb", VICTIM, "victim"))
    with serving(app) as url:
        r = httpx.post(
            f"{url}/v1/events/batch", json={"events": items}, headers=_admin(app), timeout=120
        )
        stored = _stored(app)
        assert _pool_used(app, processes)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[7] == {"index": 7, "result": "error", **INTERNAL}
    assert [x["result"] for i, x in enumerate(results) if i != 7] == ["accepted"] * 24
    emails = [b["recipient"]["email"] for b in items]
    assert stored == sorted(e for e in emails if e != VICTIM)
    assert r.json()["errors"] == 1 and r.json()["accepted"] == 24


def test_a_500_keeps_the_keep_alive_connection(
    settings: Settings, fault: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a 500 the connection answers the next request (or the 500 said
    ``Connection: close``): the bad event's own 500, and a bug in a route itself."""
    app = create_app(settings)
    h = {**_admin(app), "Content-Type": "application/json"}
    good, bad = event("acme", "ok@example.fi", "ok"), event("acme", VICTIM)
    with serving(app) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
        try:
            sock = None
            for body, status in [(bad, 500), (good, 202), (bad, 500), (good, 200)]:
                conn.request("POST", "/v1/events", json.dumps(body), headers=h)
                sock = sock or conn.sock
                r = conn.getresponse()
                assert r.status == status
                assert status != 500 or json.loads(r.read()) == INTERNAL
                r.read()
                assert (r.getheader("connection") or "").lower() != "close"
            with monkeypatch.context() as m:
                m.setattr(v1, "_accepted", _raise)
                conn.request("POST", "/v1/events", json.dumps(good | {"idempotency_key": "k"}), h)
                r = conn.getresponse()
                assert r.status == 500 and json.loads(r.read()) == INTERNAL
                assert (r.getheader("connection") or "").lower() != "close"
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
            assert conn.sock is sock  # one connection all along: never dropped under us
        finally:
            conn.close()


def _raise(*_: Any) -> Any:
    raise RuntimeError("a bug in a route")


# --- the layers behind the preparer --------------------------------------------------------


def test_group_commit_narrows_a_bug_down_to_the_event_that_raises() -> None:
    """Should anything after preparing raise for one event of a group (the accept
    stored nothing then), the group is accepted event by event; a storage failure still
    fails the whole group, since nothing of it was stored."""
    calls: list[list[str]] = []
    down = False

    async def accept_each(raws: list[str]) -> list[str]:
        calls.append(raws)
        if down:
            raise StorageError("database down")
        if "bad" in raws:
            raise KeyError("bug")
        return [f"ok:{r}" for r in raws]

    async def run() -> list[Any]:
        commit: GroupCommit[str] = GroupCommit(accept_each)
        try:
            return await asyncio.gather(
                *(commit.submit(r) for r in ("a", "bad", "b", "c")), return_exceptions=True
            )
        finally:
            await commit.close()

    a, bad, b, c = asyncio.run(run())
    assert (a, b, c) == ("ok:a", "ok:b", "ok:c")
    assert isinstance(bad, KeyError)
    assert any(len(group) > 1 and "bad" in group for group in calls)  # it shared a group
    down = True
    assert all(isinstance(r, StorageError) for r in asyncio.run(run()))


def test_intake_stores_each_alone_when_storing_a_list_hits_a_bug(
    settings: Settings, pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import open_box

    with open_box(settings, pipeline) as box:
        original = box.outbox.store

        def store(items: list[Any], atomic: bool = True) -> Any:
            if any(m.recipient == VICTIM for m in items):
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "injected")
            return original(items, atomic)

        monkeypatch.setattr(box.outbox, "store", store)
        raws = _goods(3)
        raws.insert(1, event("kustwebb", VICTIM, "victim"))
        results = box.accept_each(raws)
        assert isinstance(results[1], InternalError)
        assert [type(r).__name__ for i, r in enumerate(results) if i != 1] == ["Accepted"] * 3
        with box.transaction(write=False) as cur:
            assert cur.execute("SELECT COUNT(*) FROM outbox_messages").fetchone()[0] == 3
        with pytest.raises(UnicodeEncodeError):  # atomic: the whole batch, as before
            box.accept_batch([event("acme", VICTIM, "victim-2")])
