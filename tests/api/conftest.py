"""Fixtures for the HTTP API: an app on a temporary database, tokens of every kind."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from notifier.api import create_app
from notifier.config import Settings

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; httpx still works (tests run with -W error).
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


@dataclass
class Tokens:
    admin: str
    writer: str  # events:write, every brand (the registry)
    reader: str  # messages:read, every brand (support tools)
    acme: str  # reseller acme: events:write + messages:read
    kustwebb: str  # reseller kustwebb: events:write + messages:read

    def h(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, name)}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def tokens(client: TestClient) -> Tokens:
    store = client.app.state.tokens  # type: ignore[attr-defined]
    return Tokens(
        admin=store.create(["admin"], label="ops")[1],
        writer=store.create(["events:write"], label="registry")[1],
        reader=store.create(["messages:read"], label="support")[1],
        acme=store.create(["events:write", "messages:read"], brand="acme")[1],
        kustwebb=store.create(["events:write", "messages:read"], brand="kustwebb")[1],
    )
