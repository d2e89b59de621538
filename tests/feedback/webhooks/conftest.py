"""Fixtures for the webhook tests: an outbox on SQLite or a real PostgreSQL with a clock
the test moves, a real HTTP receiver on loopback, and a dispatcher run until idle."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Settings
from notifier.feedback import endpoints
from notifier.feedback.dispatcher import DispatchConfig, Dispatcher, DispatchStats
from notifier.feedback.signing import WebhookSecret
from notifier.outbox import Outbox, open_outbox
from notifier.outbox.events import StatusEvent
from notifier.outbox.webhook_model import Endpoint
from tests.conftest import postgres_schema
from tests.feedback.webhooks.receiver import Receiver

MASTER = b"test-secret"
T0 = 1_800_000_000.0
BRANDS = ["acme", "kustwebb", "nordname"]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with postgres_schema("wh") as url:
        yield url


@pytest.fixture
def hook_box(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    settings = Settings(var_dir=tmp_path / "var")
    with open_outbox(settings, url=db_url, clock=clock, rng=random.Random(3)) as box:
        yield box


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def add(
    box: Outbox, url: str, events: str = "*", brand: str | None = None
) -> tuple[Endpoint, WebhookSecret]:
    return endpoints.add(
        box, MASTER, url=url, events=events, brand=brand, known_brands=BRANDS, allow_private=True
    )


def emit(box: Outbox, type_: str = "message.sent", brand: str = "acme", **data: Any) -> None:
    with box.transaction() as cur:
        box._emit(cur, [StatusEvent(type_, brand, {"brand": brand, **data})], box.clock())


def dispatch(box: Outbox, **config: Any) -> DispatchStats:
    """One dispatcher until nothing is due (loopback allowed unless told otherwise)."""
    config.setdefault("allow_private", True)
    config.setdefault("poll", 0.01)
    config.setdefault("timeout", 2.0)
    dispatcher = Dispatcher(box, MASTER, DispatchConfig(**config))
    return asyncio.run(dispatcher.run(until_idle=True))
