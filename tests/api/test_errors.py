"""One table from exceptions to HTTP answers: a batch item that fails says what the
same event alone would have been answered (``notifier.api.errors.answer``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notifier.api.errors import answer
from notifier.errors import (
    Conflict,
    DNSCheckError,
    FieldError,
    HeaderInjection,
    NotifierError,
    RenderError,
    SigningError,
    StorageError,
    ValidationError,
)

from .conftest import Tokens
from .test_api import event

FAILURES: list[tuple[Exception, int, str]] = [
    (StorageError("disk full"), 503, "unavailable"),
    (Conflict("idempotency key 'k' was used with another body"), 409, "conflict"),
    (RenderError("undefined variable 'x'"), 422, "render_error"),
    (HeaderInjection("CR in the subject"), 422, "render_error"),
    (DNSCheckError("no nameserver"), 503, "unavailable"),
    (SigningError("no key"), 500, "internal_error"),
    (NotifierError("something else"), 500, "internal_error"),
    (ValidationError([FieldError("data.days_left", "too large")]), 422, "validation_error"),
]


@pytest.mark.parametrize(("exc", "status", "code"), FAILURES, ids=lambda x: type(x).__name__)
def test_a_batch_item_reports_what_a_single_event_is_answered(
    client: TestClient,
    tokens: Tokens,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
    status: int,
    code: str,
) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]

    async def accept(raw: Any) -> Any:
        raise exc

    async def accept_batch(raws: Sequence[Any]) -> list[Any]:
        return [exc for _ in raws]

    monkeypatch.setattr(store, "accept", accept)
    monkeypatch.setattr(store, "accept_batch", accept_batch)
    single = client.post("/v1/events", json=event(key="one"), headers=tokens.h("admin"))
    assert single.status_code == status, single.text
    assert single.json()["error"] == code
    found = answer(exc)
    assert found is not None and found.status == status
    if status == 503:
        assert single.headers["Retry-After"] == "5"
    batch = client.post(
        "/v1/events/batch", json={"events": [event(key="one")]}, headers=tokens.h("admin")
    )
    assert batch.status_code == 200, batch.text
    item = batch.json()["results"][0]
    assert item["result"] == "error"
    assert {"error": item["error"], "detail": item["detail"]} == single.json()
    assert batch.json()["errors"] == 1


def test_storage_failure_of_a_batch_item_is_unavailable(
    client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One item's storage failure does not hide the others' results."""
    store = client.app.state.store  # type: ignore[attr-defined]
    real = store.accept_batch

    async def accept_batch(raws: Sequence[Any]) -> list[Any]:
        done = await real(raws[1:])
        return [StorageError("the intake worker died"), *done]

    monkeypatch.setattr(store, "accept_batch", accept_batch)
    r = client.post(
        "/v1/events/batch",
        json={"events": [event(key="a"), event(key="b", email="b@example.fi")]},
        headers=tokens.h("admin"),
    )
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert first == {
        "index": 0,
        "result": "error",
        "error": "unavailable",
        "detail": "the message store is unavailable; nothing was accepted, try again",
    }
    assert second["result"] == "accepted"


def test_a_bug_is_still_a_500_for_the_whole_batch(
    client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]

    async def accept_batch(raws: Sequence[Any]) -> list[Any]:
        return [KeyError("bug") for _ in raws]

    monkeypatch.setattr(store, "accept_batch", accept_batch)
    assert answer(KeyError("bug")) is None
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/v1/events/batch", json={"events": [event()]}, headers=tokens.h("admin"))
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "detail": "internal error"}
