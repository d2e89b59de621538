"""Status events ride in the transaction of the change they report: committed with it,
rolled back with it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.config import Settings
from notifier.outbox import Outbox, open_outbox
from notifier.outbox.events import EVENT_TYPES, StatusEvent
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", "postgres"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    settings = Settings(var_dir=tmp_path)
    if request.param == "sqlite":
        with open_outbox(settings, url=f"sqlite:///{tmp_path}/o.db") as box:
            yield box
    else:
        with postgres_schema("ev") as url, open_outbox(settings, url=url) as box:
            yield box


def _stored(outbox: Outbox) -> list[tuple[object, ...]]:
    with outbox.transaction(write=False) as cur:
        return cur.execute(
            "SELECT type, brand, message, data, created_at FROM outbox_events ORDER BY id"
        ).fetchall()


def test_committed_with_the_change(outbox: Outbox) -> None:
    with outbox.transaction() as cur:
        outbox._emit(
            cur,
            [StatusEvent("brand.dns_changed", "acme", {"state": "verified"})],
            at=1_800_000_000.0,
        )
    [(type_, brand, message, data, at)] = _stored(outbox)
    assert (type_, brand, message, at) == ("brand.dns_changed", "acme", None, 1_800_000_000.0)
    assert json.loads(str(data)) == {"state": "verified"}


def test_rolled_back_with_the_change(outbox: Outbox) -> None:
    with pytest.raises(RuntimeError), outbox.transaction() as cur:
        outbox._emit(cur, [StatusEvent("message.sent", "acme", {"id": 1}, message=1)], at=1.0)
        raise RuntimeError("the state change failed")
    assert _stored(outbox) == []


def test_unknown_type_refused() -> None:
    assert "message.bounced" in EVENT_TYPES
    with pytest.raises(ValueError, match=r"message\.opened"):
        StatusEvent("message.opened", "acme")
