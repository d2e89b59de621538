"""The HTTP API end to end through TestClient: every endpoint and every error shape."""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from notifier import events as catalog
from notifier.api import create_app
from notifier.api.metrics import HttpMetrics, OutboxCollector, exposition
from notifier.api.preview import RateLimiter
from notifier.api.session import Session, dump, load, session_key
from notifier.api.store import Stats, decode_cursor, encode_cursor, open_store
from notifier.api.ui_text import choose, parse_accept_language
from notifier.compose import unsubscribe as links
from notifier.config import Settings
from notifier.delivery.transport import AttemptResult
from notifier.dns import checks as dnscheck
from notifier.errors import StorageError, ValidationError
from notifier.outbox import Delivery, OutboxConfig, Status
from notifier.tokens import TokenStore, hash_token, token_id_of
from tests.conftest import postgres_schema

from .conftest import Tokens

RENEWAL = "domain.renewal_reminder"


def event(
    brand: str = "acme",
    key: str | None = None,
    email: str = "aino.virtanen@example.fi",
    name: str = RENEWAL,
    language: str | None = "fi",
    **data: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": name,
        "brand": brand,
        "recipient": {"email": email, "name": "Aino Virtanen", "language": language},
        "data": {**copy.deepcopy(dict(catalog.CATALOG[name].sample)), **data},
    }
    if key is not None:
        body["idempotency_key"] = key
    return body


def accept(client: TestClient, tokens: Tokens, body: dict[str, Any], who: str = "admin") -> int:
    r = client.post("/v1/events", json=body, headers=tokens.h(who))
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def outbox(client: TestClient) -> Any:
    return client.app.state.store.outbox  # type: ignore[attr-defined]


def count_messages(client: TestClient) -> int:
    with outbox(client).transaction(write=False) as cur:
        row = cur.execute("SELECT COUNT(*) FROM outbox_messages").fetchone()
    return int(row[0])


def finish(client: TestClient, status: Status, **attempt: Any) -> list[int]:
    """Let a fake worker take every due message to ``status``."""
    box = outbox(client)
    claims = box.claim("test-worker", 100)
    result = AttemptResult(
        "sent" if status == Status.SENT else "permanent",
        host="mx.example.fi",
        code=250 if status == Status.SENT else 550,
        enhanced="2.0.0" if status == Status.SENT else "5.1.1",
        text=attempt.get("text", "ok" if status == Status.SENT else "no such user"),
    )
    box.complete(
        "test-worker",
        [
            Delivery(
                id=c.id,
                status=status,
                reason=None if status == Status.SENT else "550",
                attempt=result,
                rcpt_to=c.rcpt_to,
                brand=c.brand,
            )
            for c in claims
        ],
    )
    return [c.id for c in claims]


# --- health, docs, unknown routes ---------------------------------------------------------


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"outbox": "ok", "tokens": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise StorageError("connection refused")

    monkeypatch.setattr(client.app.state.store, "ping", down)  # type: ignore[attr-defined]
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json()["checks"]["outbox"] == "connection refused"


def test_openapi_and_docs(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/v1/events",
        "/v1/events/batch",
        "/v1/messages",
        "/v1/messages/{message_id}",
        "/v1/messages/{message_id}/retry",
        "/v1/events/catalog",
        "/v1/brands/{brand_id}/dns",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in doc["paths"], path
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EventIn"}
    schemas = doc["components"]["schemas"]
    variants = schemas["EventIn"]["oneOf"]  # one per catalog event, told apart by `event`
    assert len(variants) == len(catalog.CATALOG)
    for variant in variants:
        assert "recipient" in schemas[variant["$ref"].rsplit("/", 1)[1]]["properties"]
    assert "BatchIn" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/preview" not in doc["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unknown_route_and_method_are_json(client: TestClient, tokens: Tokens) -> None:
    r = client.get("/v1/nothing", headers=tokens.h("admin"))
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "Not Found"}
    r = client.delete("/v1/events", headers=tokens.h("admin"))
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


# --- authentication and scopes ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer nt_aaaaaaaaaa_" + "A" * 43},
        {"Authorization": "Bearer not-a-token"},
    ],
)
def test_401_without_a_valid_token(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in (
        ("post", "/v1/events"),
        ("get", "/v1/messages"),
        ("get", "/v1/messages/1"),
        ("get", "/v1/events/catalog"),
        ("get", "/metrics"),
        ("get", "/v1/brands/acme/dns"),
    ):
        r = client.request(
            method, path, headers=headers, json=event() if method == "post" else None
        )
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_401_before_the_body_is_parsed(client: TestClient) -> None:
    r = client.post("/v1/events", content=b"{not json")
    assert r.status_code == 401


def test_revoked_token_is_401(client: TestClient, tokens: Tokens) -> None:
    store: TokenStore = client.app.state.tokens  # type: ignore[attr-defined]
    record, secret = store.create(["messages:read"])
    assert (
        client.get("/v1/messages", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    )
    assert store.revoke(record.id)
    r = client.get("/v1/messages", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("who", "method", "path"),
    [
        ("reader", "post", "/v1/events"),
        ("reader", "post", "/v1/events/batch"),
        ("reader", "post", "/v1/messages/1/retry"),
        ("writer", "get", "/v1/messages"),
        ("writer", "get", "/v1/messages/1"),
        ("writer", "get", "/metrics"),
        ("acme", "get", "/metrics"),
    ],
)
def test_403_for_a_missing_scope(
    client: TestClient, tokens: Tokens, who: str, method: str, path: str
) -> None:
    r = client.request(method, path, headers=tokens.h(who), json={"events": [event()]})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


# --- intake -------------------------------------------------------------------------------


def test_post_event_202_then_200_for_the_same_key(client: TestClient, tokens: Tokens) -> None:
    body = event(key="renewal-48213-30", language="sv")
    r = client.post("/v1/events", json=body, headers=tokens.h("writer"))
    assert r.status_code == 202
    first = r.json()
    assert set(first) == {"id", "status", "language"}
    assert first["status"] == "queued" and first["language"] == "sv"
    again = client.post("/v1/events", json=body, headers=tokens.h("writer"))
    assert again.status_code == 200
    assert again.json() == first
    assert count_messages(client) == 1


def test_same_key_other_body_is_409_and_enqueues_nothing(
    client: TestClient, tokens: Tokens
) -> None:
    accept(client, tokens, event(key="k-1"))
    r = client.post("/v1/events", json=event(key="k-1", days_left=7), headers=tokens.h("admin"))
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert "k-1" in r.json()["detail"]
    assert count_messages(client) == 1


def test_422_names_the_field_path(client: TestClient, tokens: Tokens) -> None:
    r = client.post("/v1/events", json=event(expires_at="next week"), headers=tokens.h("admin"))
    assert r.status_code == 422
    doc = r.json()
    assert doc["error"] == "validation_error"
    assert [d["field"] for d in doc["detail"]] == ["data.expires_at"]
    assert doc["detail"][0]["message"]
    body = event()
    del body["recipient"]["email"]
    body["data"]["price"] = {"amount": "x"}
    fields = {
        d["field"]
        for d in client.post("/v1/events", json=body, headers=tokens.h("admin")).json()["detail"]
    }
    assert "recipient.email" in fields


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (json.dumps({**event(), "event": "domain.nope"}).encode(), "event"),
        (json.dumps({**event(), "brand": "nope"}).encode(), "brand"),
        (json.dumps({**event(), "extra": 1}).encode(), "extra"),
        (json.dumps(event(email="bob@x\nBcc: eve@example.com")).encode(), "recipient.email"),
    ],
)
def test_422_for_bad_bodies(client: TestClient, tokens: Tokens, content: bytes, field: str) -> None:
    r = client.post("/v1/events", content=content, headers=tokens.h("admin"))
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["detail"]]
    assert count_messages(client) == 0


def test_request_validation_errors_use_the_same_shape(client: TestClient, tokens: Tokens) -> None:
    r = client.get("/v1/messages?limit=0", headers=tokens.h("admin"))
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error"
    assert r.json()["detail"][0]["field"] == "limit"
    r = client.get("/v1/messages/abc", headers=tokens.h("admin"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "message_id"


def test_413_over_the_size_limit_checked_before_parsing(client: TestClient, tokens: Tokens) -> None:
    limit = 64 * 1024
    big = b'{"padding": "' + b"x" * limit + b'"}'
    r = client.post("/v1/events", content=big, headers=tokens.h("admin"))
    assert r.status_code == 413
    assert r.json() == {"error": "payload_too_large", "detail": f"request body over {limit} bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    r = client.post("/v1/events", content=chunks(), headers=tokens.h("admin"))
    assert r.status_code == 413
    # just under the limit is parsed (and here refused as invalid, not as too large)
    r = client.post("/v1/events", content=b" " * (limit - 10) + b"{}", headers=tokens.h("admin"))
    assert r.status_code == 422


def test_size_limit_follows_settings(tmp_path: Any) -> None:
    settings = Settings(var_dir=tmp_path / "var", max_event_bytes=2048)
    app = create_app(settings)
    with TestClient(app) as c:
        secret = app.state.tokens.create(["admin"])[1]
        r = c.post("/v1/events", content=b"x" * 2049, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 413


def test_503_when_the_database_is_locked_and_nothing_is_accepted(settings: Settings) -> None:
    store = open_store(settings, config=OutboxConfig(busy_timeout=0.05))
    app = create_app(settings, store=store)
    with TestClient(app) as c:
        secret = app.state.tokens.create(["admin"])[1]
        h = {"Authorization": f"Bearer {secret}"}
        assert c.get("/v1/messages", headers=h).status_code == 200
        lock = sqlite3.connect(settings.var_dir / "notifier.db", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            r = c.post("/v1/events", json=event(key="k"), headers=h)
            assert r.status_code == 503
            assert r.headers["Retry-After"] == "5"
            assert r.json()["error"] == "unavailable"
            r = c.post(
                "/v1/events/batch", json={"events": [event(key="a"), event(key="b")]}, headers=h
            )
            assert r.status_code == 503
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert c.get("/v1/messages", headers=h).json()["items"] == []
        assert c.post("/v1/events", json=event(key="k"), headers=h).status_code == 202


def test_503_when_the_store_is_down(
    client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: Any, **__: Any) -> Any:
        raise StorageError("disk full")

    store = client.app.state.store  # type: ignore[attr-defined]
    for name in ("accept", "accept_batch", "message", "messages", "retry"):
        monkeypatch.setattr(store, name, down)
    for method, path in (
        ("post", "/v1/events"),
        ("post", "/v1/events/batch"),
        ("get", "/v1/messages"),
        ("get", "/v1/messages/1"),
        ("post", "/v1/messages/1/retry"),
    ):
        body = {"events": [event()]} if path.endswith("batch") else event()
        r = client.request(method, path, json=body, headers=tokens.h("admin"))
        assert r.status_code == 503, path
        assert r.headers["Retry-After"] == "5"


# --- batch ----------------------------------------------------------------------------------


def test_batch_one_result_per_item_and_bad_items_reject_nothing(
    client: TestClient, tokens: Tokens
) -> None:
    accept(client, tokens, event(key="seen"))
    items = [
        event(key="b-0"),
        event(key="b-1", expires_at="soon"),
        event(key="seen"),
        event(key="seen", brand="acme", days_left=3),  # same key, other body: conflict
        "not an event",
        event(key="b-5", language="en", email="other@example.fi"),
    ]
    r = client.post("/v1/events/batch", json={"events": items}, headers=tokens.h("writer"))
    assert r.status_code == 200, r.text
    doc = r.json()
    results = doc["results"]
    assert [x["index"] for x in results] == list(range(6))
    assert [x["result"] for x in results] == [
        "accepted",
        "error",
        "duplicate",
        "error",
        "error",
        "accepted",
    ]
    assert results[1]["error"] == "validation_error"
    assert results[1]["detail"] == [
        {"field": "events[1].data.expires_at", "message": results[1]["detail"][0]["message"]}
    ]
    assert results[3]["error"] == "conflict"
    assert results[4]["detail"][0]["field"] == "events[4]"
    assert results[5]["language"] == "en"
    assert (doc["accepted"], doc["duplicates"], doc["errors"]) == (2, 1, 3)
    assert count_messages(client) == 3


def test_batch_limits(client: TestClient, tokens: Tokens) -> None:
    h = tokens.h("admin")
    assert client.post("/v1/events/batch", json={"events": []}, headers=h).status_code == 422
    assert client.post("/v1/events/batch", json=[event()], headers=h).status_code == 422
    r = client.post("/v1/events/batch", json={"events": [event()], "x": 1}, headers=h)
    assert r.status_code == 422
    r = client.post("/v1/events/batch", json={"events": [{}] * 1001}, headers=h)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "events"
    big = event(key="big")
    big["data"]["padding"] = "x" * (64 * 1024)
    r = client.post("/v1/events/batch", json={"events": [big, event(key="small")]}, headers=h)
    assert [x["result"] for x in r.json()["results"]] == ["error", "accepted"]
    assert r.json()["results"][0]["error"] == "payload_too_large"


def test_batch_of_a_thousand(client: TestClient, tokens: Tokens) -> None:
    items = [event(key=f"k{i}", email=f"user{i}@example.fi") for i in range(1000)]
    r = client.post("/v1/events/batch", json={"events": items}, headers=tokens.h("admin"))
    assert r.status_code == 200
    assert r.json()["accepted"] == 1000
    assert len({x["id"] for x in r.json()["results"]}) == 1000


def test_batch_rendered_in_worker_processes(settings: Settings) -> None:
    app = create_app(settings, outbox_config=OutboxConfig(intake_processes=2), warm_up=True)
    with TestClient(app) as c:
        preparer = app.state.store.intake.preparer
        assert preparer._pool is not None  # started with the app (warm_up)
        h = {"Authorization": f"Bearer {app.state.tokens.create(['admin'])[1]}"}
        items = [event(key=f"p{i}", email=f"p{i}@example.fi") for i in range(200)]
        items[150]["data"]["expires_at"] = "soon"
        r = c.post("/v1/events/batch", json={"events": items}, headers=h)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert r.json()["accepted"] == 199
        assert results[150]["detail"][0]["field"] == "events[150].data.expires_at"
        again = c.post("/v1/events/batch", json={"events": items}, headers=h).json()
        assert again["duplicates"] == 199
        assert [x.get("id") for x in again["results"]] == [x.get("id") for x in results]
    assert preparer._pool is None  # stopped with the app


# --- messages ------------------------------------------------------------------------------


def test_get_message_state_attempts_message_id_language(client: TestClient, tokens: Tokens) -> None:
    mid = accept(client, tokens, event(key="m", language="en"))
    finish(client, Status.FAILED)
    r = client.get(f"/v1/messages/{mid}", headers=tokens.h("reader"))
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == mid
    assert doc["status"] == "failed"
    assert doc["language"] == "en"
    assert re.fullmatch(r"<[0-9a-f]{32}@[a-z0-9.-]+>", doc["message_id"])
    assert doc["attempts"] == 1
    attempt = doc["attempt_log"][0]
    assert (attempt["code"], attempt["enhanced"], attempt["host"]) == (
        550,
        "5.1.1",
        "mx.example.fi",
    )
    assert "worker" not in attempt and "lease_expires_at" not in doc
    full = client.get(f"/v1/messages/{mid}", headers=tokens.h("admin")).json()
    assert full["attempt_log"][0]["worker"] == "test-worker"
    assert "lease_expires_at" in full


def test_get_unknown_message_is_404(client: TestClient, tokens: Tokens) -> None:
    r = client.get("/v1/messages/999", headers=tokens.h("admin"))
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "no such message"}
    assert client.get(f"/v1/messages/{2**63}", headers=tokens.h("admin")).status_code == 422


def test_list_messages_filters_and_cursor(client: TestClient, tokens: Tokens) -> None:
    ids = [accept(client, tokens, event(key=f"l{i}", email=f"u{i}@example.fi")) for i in range(5)]
    accept(client, tokens, event(brand="kustwebb", key="kw"))
    h = tokens.h("admin")
    page1 = client.get("/v1/messages?brand=acme&limit=2", headers=h).json()
    assert [m["id"] for m in page1["items"]] == [ids[4], ids[3]]
    page2 = client.get(
        f"/v1/messages?brand=acme&limit=2&cursor={page1['next_cursor']}", headers=h
    ).json()
    assert [m["id"] for m in page2["items"]] == [ids[2], ids[1]]
    page3 = client.get(
        f"/v1/messages?brand=acme&limit=2&cursor={page2['next_cursor']}", headers=h
    ).json()
    assert [m["id"] for m in page3["items"]] == [ids[0]]
    assert page3["next_cursor"] is None
    found = client.get("/v1/messages?recipient=U3@example.fi", headers=h).json()["items"]
    assert [m["id"] for m in found] == [ids[3]]
    assert client.get("/v1/messages?status=sent", headers=h).json()["items"] == []
    assert len(client.get(f"/v1/messages?event={RENEWAL}", headers=h).json()["items"]) == 6
    r = client.get("/v1/messages?cursor=bogus", headers=h)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "cursor"
    for bogus in ("bogus", ""):
        r = client.get(f"/v1/messages?status={bogus}", headers=h)
        assert r.status_code == 422
        assert r.json()["detail"][0]["field"] == "status"


def test_retry_failed_message(client: TestClient, tokens: Tokens) -> None:
    mid = accept(client, tokens, event(key="r"))
    r = client.post(f"/v1/messages/{mid}/retry", headers=tokens.h("admin"))
    assert r.status_code == 409  # queued: nothing to retry
    assert r.json()["error"] == "conflict"
    finish(client, Status.FAILED)
    r = client.post(f"/v1/messages/{mid}/retry", headers=tokens.h("writer"))
    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert client.post("/v1/messages/999/retry", headers=tokens.h("admin")).status_code == 404


# --- a reseller token can read nothing of another brand ------------------------------------


def test_reseller_token_sees_nothing_of_another_brand(client: TestClient, tokens: Tokens) -> None:
    theirs = accept(client, tokens, event(brand="kustwebb", key="theirs"))
    ours = accept(client, tokens, event(brand="acme", key="ours"), who="acme")
    finish(client, Status.FAILED)
    acme = tokens.h("acme")
    missing = client.get("/v1/messages/999999", headers=acme)
    other = client.get(f"/v1/messages/{theirs}", headers=acme)
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    assert client.get(f"/v1/messages/{ours}", headers=acme).status_code == 200
    listed = client.get("/v1/messages", headers=acme).json()["items"]
    assert [m["id"] for m in listed] == [ours]
    assert client.get("/v1/messages?brand=kustwebb", headers=acme).json()["items"] == []
    # one more message of each brand, still queued: each status filter has both brands'
    # messages to tell apart (an empty list would pass the brand check vacuously)
    ours_queued = accept(client, tokens, event(brand="acme", key="ours-q", domain="q.fi"))
    theirs_queued = accept(client, tokens, event(brand="kustwebb", key="theirs-q", domain="q.fi"))
    for status, mine, not_mine in (
        ("failed", ours, theirs),
        ("queued", ours_queued, theirs_queued),
    ):
        items = client.get(f"/v1/messages?status={status}", headers=acme).json()["items"]
        assert all(m["brand"] == "acme" for m in items)
        assert [m["id"] for m in items] == [mine]
        everyone = client.get(f"/v1/messages?status={status}", headers=tokens.h("admin"))
        assert {m["id"] for m in everyone.json()["items"]} == {mine, not_mine}
    r = client.post(f"/v1/messages/{theirs}/retry", headers=acme)
    assert r.status_code == 404 and r.json() == missing.json()
    assert (
        client.get(f"/v1/messages/{theirs}", headers=tokens.h("admin")).json()["status"] == "failed"
    )
    assert client.get("/v1/brands/kustwebb/dns", headers=acme).status_code == 404
    r = client.post("/v1/events", json=event(brand="kustwebb", key="x"), headers=acme)
    assert r.status_code == 403
    r = client.post(
        "/v1/events/batch",
        json={"events": [event(brand="kustwebb", key="y"), event(key="z")]},
        headers=acme,
    )
    assert [x["result"] for x in r.json()["results"]] == ["error", "accepted"]
    assert r.json()["results"][0]["error"] == "forbidden"
    # and the preview of another brand does not exist for it
    _sign_in(client, tokens.acme)
    assert client.get("/preview/brands/kustwebb").status_code == 404
    assert client.get("/preview/brands/kustwebb/eml").status_code == 404


# --- catalog, DNS, metrics --------------------------------------------------------------------


def test_catalog(client: TestClient, tokens: Tokens) -> None:
    r = client.get("/v1/events/catalog", headers=tokens.h("acme"))
    assert r.status_code == 200
    events = r.json()["events"]
    assert [e["name"] for e in events] == list(catalog.CATALOG)
    renewal = next(e for e in events if e["name"] == RENEWAL)
    assert renewal["mandatory"] is True and renewal["audience"] == "registrant"
    assert "expires_at" in renewal["schema"]["properties"]
    assert renewal["sample"]["days_left"] == 30


def test_brand_dns(client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake(brand: Any, settings: Any, keystore: Any, **_: Any) -> list[dnscheck.Check]:
        seen.append(brand.id)
        return [
            dnscheck.Check("spf", "SPF", "ok", brand.sending_domain),
            dnscheck.Check(
                "dmarc",
                "DMARC",
                "fail",
                f"_dmarc.{brand.sending_domain}",
                found=None,
                expected="v=DMARC1; p=none",
            ),
        ]

    monkeypatch.setattr(dnscheck, "check_brand", fake)
    r = client.get("/v1/brands/acme/dns", headers=tokens.h("acme"))
    assert r.status_code == 200
    doc = r.json()
    assert doc["brand"] == "acme" and doc["ok"] is False
    assert [c["status"] for c in doc["checks"]] == ["ok", "fail"]
    assert doc["checks"][1]["expected"] == "v=DMARC1; p=none"
    assert client.get("/v1/brands/nope/dns", headers=tokens.h("admin")).status_code == 404
    assert seen == ["acme"]


def _families(text: str) -> dict[str, Any]:
    """Every family in an exposition, parsed by prometheus-client's own parser."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    found = [
        s.value
        for f in families.values()
        for s in f.samples
        if s.name == sample and s.labels == labels
    ]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0])


def test_metrics(client: TestClient, tokens: Tokens) -> None:
    accept(client, tokens, event(key="a"))
    accept(client, tokens, event(key="b", email="b@example.fi"))
    finish(client, Status.SENT)
    accept(client, tokens, event(brand="kustwebb", key="c"))
    r = client.get("/metrics", headers=tokens.h("admin"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert (
        'notifier_messages_accepted_total{brand="acme",event="domain.renewal_reminder"} 2' in text
    )
    assert 'notifier_messages_sent_total{brand="acme",event="domain.renewal_reminder"} 2' in text
    assert "notifier_queue_depth 1" in text
    assert "# TYPE notifier_accept_to_sent_seconds histogram" in text
    assert 'notifier_accept_to_sent_seconds_bucket{le="+Inf"} 2' in text
    assert "notifier_accept_to_sent_seconds_count 2" in text
    assert "notifier_outbox_up 1" in text
    assert re.search(
        r'notifier_http_requests_total\{method="POST",route="/v1/events",'
        r'status="202"\} 3',
        text,
    )
    for line in text.splitlines():  # every sample line parses
        if not line.startswith("#"):
            assert re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf", line)

    # the whole exposition, read by prometheus-client's parser
    families = _families(text)
    renewal = {"brand": "acme", "event": RENEWAL}
    assert families["notifier_messages_accepted"].type == "counter"
    assert _value(families, "notifier_messages_accepted_total", **renewal) == 2
    assert _value(families, "notifier_messages_sent_total", **renewal) == 2
    assert (
        _value(families, "notifier_messages_accepted_total", brand="kustwebb", event=RENEWAL) == 1
    )
    assert (
        _value(families, "notifier_messages", brand="kustwebb", event=RENEWAL, status="queued") == 1
    )
    assert _value(families, "notifier_queue_depth") == 1
    assert _value(families, "notifier_outbox_up") == 1
    latency = families["notifier_accept_to_sent_seconds"]
    assert latency.type == "histogram"
    assert _value(families, "notifier_accept_to_sent_seconds_count") == 2
    assert _value(families, "notifier_accept_to_sent_seconds_bucket", le="+Inf") == 2
    buckets = [s.value for s in latency.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert families["notifier_http_requests"].type == "counter"
    assert (
        _value(
            families,
            "notifier_http_requests_total",
            method="POST",
            route="/v1/events",
            status="202",
        )
        == 3
    )
    assert families["notifier_http_request_duration_seconds"].type == "histogram"
    assert _value(families, "notifier_process_start_time_seconds") > 0
    # the usual process and platform metrics come with them
    assert _value(families, "process_resident_memory_bytes") > 0
    assert families["python_info"].type == "gauge"


def test_metrics_when_the_outbox_does_not_answer(
    client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> Stats:
        raise StorageError("disk full")

    monkeypatch.setattr(client.app.state.store, "stats", down)  # type: ignore[attr-defined]
    r = client.get("/metrics", headers=tokens.h("admin"))
    assert r.status_code == 200
    families = _families(r.text)
    assert _value(families, "notifier_outbox_up") == 0
    assert "notifier_queue_depth" not in families
    assert "notifier_http_requests" in families


def test_metrics_label_escaping() -> None:
    stats = Stats(live={('a"b\\c\nd', RENEWAL, "queued"): 1})
    text = exposition(stats, HttpMetrics()).decode()
    assert (
        'notifier_messages{brand="a\\"b\\\\c\\nd",event="domain.renewal_reminder",'
        'status="queued"} 1' in text
    )
    families = _families(text)
    assert (
        _value(families, "notifier_messages", brand='a"b\\c\nd', event=RENEWAL, status="queued")
        == 1
    )
    http = HttpMetrics()
    http.observe("GET", "/healthz", 200, 0.002)
    families = _families(exposition(None, http).decode())
    assert (
        _value(
            families, "notifier_http_request_duration_seconds_bucket", route="/healthz", le="0.005"
        )
        == 1
    )
    assert next(iter(OutboxCollector(None).collect())).name == "notifier_outbox_up"


# --- unsubscribe (RFC 8058) ------------------------------------------------------------------


def _unsub_token(settings: Settings, brand: str = "acme", email: str = "aino@example.fi") -> str:
    return links.make_token(settings.secret(), links.Subscription(brand, email, "domain.renewed"))


def test_unsubscribe_get_asks_and_post_suppresses(
    client: TestClient, settings: Settings, tokens: Tokens
) -> None:
    token = _unsub_token(settings)
    box = outbox(client)
    page = client.get(f"/u/{token}", headers={"Accept-Language": "fi"})
    assert page.status_code == 200
    assert "Peru tilaus" in page.text and "aino@example.fi" in page.text
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert not box.is_suppressed("acme", "aino@example.fi")  # a GET never unsubscribes
    r = client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert box.is_suppressed("acme", "aino@example.fi")
    # optional mail to the address is now suppressed; mandatory notices are not
    renewed = event(name="domain.renewed", key="after", email="Aino@example.fi")
    r = client.post("/v1/events", json=renewed, headers=tokens.h("admin"))
    assert r.json()["status"] == "suppressed"
    assert accept(client, tokens, event(key="mandatory", email="aino@example.fi"))


def test_unsubscribe_accepts_multipart_and_rejects_forged_tokens(
    client: TestClient, settings: Settings
) -> None:
    token = _unsub_token(settings, email="b@example.fi")
    r = client.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    forged = links.make_token(b"other secret", links.Subscription("acme", "c@example.fi", "x"))
    for bad in (forged, "garbage", token[:-2] + "AA", "a." * 400):
        assert client.get(f"/u/{bad}").status_code == 404
        assert client.post(f"/u/{bad}").status_code == 404
    assert not outbox(client).is_suppressed("acme", "c@example.fi")


def test_unsubscribe_503_when_the_store_fails(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: Any) -> None:
        raise StorageError("locked")

    monkeypatch.setattr(client.app.state.store, "suppress", down)  # type: ignore[attr-defined]
    r = client.post(f"/u/{_unsub_token(settings)}", headers={"Accept": "text/html"})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("lang", "words"), [("sv", "Avsluta prenumeration"), ("en", "Unsubscribe")]
)
def test_unsubscribe_page_speaks_the_language_of_the_mail(
    client: TestClient, settings: Settings, lang: str, words: str
) -> None:
    # the browser asks for Finnish; the mail was in Swedish or English: the page follows the mail
    sub = links.Subscription("kustwebb", "aino@example.fi", "domain.renewed", lang)
    token = links.make_token(settings.secret(), sub)
    for r in (
        client.get(f"/u/{token}", headers={"Accept-Language": "fi"}),
        client.post(
            f"/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Accept-Language": "fi", "Content-Type": "application/x-www-form-urlencoded"},
        ),
    ):
        assert r.status_code == 200
        assert f'<html lang="{lang}">' in r.text and words in r.text
        assert "Peru tilaus" not in r.text
        assert r.headers["Content-Language"] == lang


def test_unsubscribe_page_of_a_link_without_language_follows_the_browser(
    client: TestClient, settings: Settings
) -> None:
    # links sent before tokens carried the language; and a language the brand lacks
    for sub in (
        links.Subscription("kustwebb", "aino@example.fi", "domain.renewed"),
        links.Subscription("kustwebb", "aino@example.fi", "domain.renewed", "de"),
    ):
        token = links.make_token(settings.secret(), sub)
        r = client.get(f"/u/{token}", headers={"Accept-Language": "fi"})
        assert '<html lang="fi">' in r.text and "Peru tilaus" in r.text


# --- preview pages (server side; the browser test drives a real Chromium) ---------------------


def _sign_in(client: TestClient, token: str, lang: str = "en") -> str:
    form = client.get("/preview", headers={"Accept-Language": lang})  # the sign-in CSRF value
    r = client.post(
        "/preview/login",
        data={"token": token, "csrf": _csrf(form.text)},
        headers={"Accept-Language": lang},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return r.headers["set-cookie"]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def test_preview_sign_in_sets_a_strict_session_cookie(client: TestClient, tokens: Tokens) -> None:
    page = client.get("/preview")
    assert page.status_code == 200 and 'id="sign-in"' in page.text
    cookie = _sign_in(client, tokens.acme)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/preview" in cookie
    r = client.get("/preview", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/preview/brands/acme"


def test_preview_refuses_bad_and_unbound_tokens(client: TestClient, tokens: Tokens) -> None:
    csrf = _csrf(client.get("/preview").text)
    r = client.post("/preview/login", data={"token": "nope", "csrf": csrf})
    assert r.status_code == 401 and 'id="sign-in-error"' in r.text
    r = client.post("/preview/login", data={"token": tokens.writer, "csrf": csrf})
    assert r.status_code == 403
    r = client.get("/preview/brands/acme", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/preview"


def test_preview_forged_or_revoked_session_signs_out(
    client: TestClient, tokens: Tokens, settings: Settings
) -> None:
    forged = dump(b"wrong key", Session("x", None, "c", 2**40))
    client.cookies.set("notifier_preview", forged, path="/preview")
    assert client.get("/preview/brands/acme", follow_redirects=False).status_code == 303
    client.cookies.clear()
    store: TokenStore = client.app.state.tokens  # type: ignore[attr-defined]
    record, secret = store.create(["messages:read"], brand="acme")
    _sign_in(client, secret)
    assert client.get("/preview/brands/acme").status_code == 200
    store.revoke(record.id)
    assert client.get("/preview/brands/acme", follow_redirects=False).status_code == 303


def test_preview_page_headers_iframe_and_policy(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    r = client.get(f"/preview/brands/acme?event={RENEWAL}&lang=sv")
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    html = r.text
    iframe = re.search(r"<iframe[^>]*>", html)
    assert iframe
    tag = iframe.group(0)
    assert 'sandbox=""' in tag and "allow-scripts" not in tag
    srcdoc = re.search(r'srcdoc="([^"]*)"', tag)
    assert srcdoc and "<" not in srcdoc.group(1) and "&lt;html" in srcdoc.group(1)
    assert "<script" not in html
    assert re.search(r'id="h-from">Acme Digital &lt;verkkotunnukset@[a-z.]+&gt;<', html)
    assert 'id="h-reply-to">Acme Digital &lt;tuki@acme.fi&gt;<' in html
    assert 'id="h-to">Aino Virtanen &lt;aino.virtanen@example.fi&gt;<' in html
    assert re.search(r'id="h-subject">[^<]*förnya', html)
    assert 'id="lang-sv" class="pill" hreflang="sv" aria-current="true"' in html
    assert 'id="mail-text"' in html and "Hej" in html


def test_preview_page_text_follows_accept_language(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    for lang, words in (
        (
            "fi-FI,fi;q=0.9,en;q=0.5",
            ["Viestit verkkotunnusten haltijoille", "Lähetä minulle testiviesti"],
        ),
        ("sv-FI,sv;q=0.9", ["E-post till domäninnehavare", "Skicka ett testmeddelande till mig"]),
        ("de-DE", ["Mail to domain holders", "Send me a test"]),
    ):
        r = client.get("/preview/brands/acme", headers={"Accept-Language": lang})
        for word in words:
            assert word in r.text, (lang, word)
        assert r.headers["Content-Language"] == ("en" if lang.startswith("de") else lang[:2])


@pytest.mark.parametrize(
    ("lang", "nav", "heading"),
    [
        ("fi", "Uusimismuistutus", "Voimassaolo päättynyt"),
        ("sv", "Påminnelse om förnyelse", "Domännamnet har löpt ut"),
        ("en", "Renewal reminder", "Domain expired"),
    ],
)
def test_preview_names_events_by_their_title_in_the_page_language(
    client: TestClient, tokens: Tokens, lang: str, nav: str, heading: str
) -> None:
    _sign_in(client, tokens.acme, lang)
    r = client.get("/preview/brands/acme?event=domain.expired", headers={"Accept-Language": lang})
    html = r.text
    listing = html[html.index('class="event-list"') :]
    listing = listing[: listing.index("</nav>")]
    links = re.findall(r'<a href="/preview/brands/acme\?event=[^"]*"[^>]*>([^<]*)</a>', listing)
    assert len(links) == len(catalog.CATALOG)
    assert nav in links and not set(links) & set(catalog.CATALOG)  # no raw event ids
    assert f'<h1 id="event-name">{heading}</h1>' in html
    assert f"<title>Acme Digital · {heading} – " in html
    assert "<code>domain.expired</code>" in html  # the id stays, for developers
    summary = catalog.CATALOG["domain.expired"].summary
    assert (summary in html) == (lang == "en")  # the catalog's English summary


def test_preview_groups_events_by_audience(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    html = client.get("/preview/brands/acme").text
    registrant = html.index("Mail to domain holders")
    reseller = html.index("Mail to resellers")
    assert (
        registrant
        < html.index(f"?event={RENEWAL}")
        < reseller
        < html.index("?event=reseller.balance_low")
    )


def test_preview_edited_data_errors_shown_in_place(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    csrf = _csrf(client.get("/preview/brands/acme").text)
    data = dict(catalog.CATALOG[RENEWAL].sample)
    data["expires_at"] = "tomorrow"
    r = client.post(
        "/preview/brands/acme",
        data={
            "csrf": csrf,
            "event": RENEWAL,
            "lang": "fi",
            "data": json.dumps(data),
            "action": "render",
        },
    )
    assert r.status_code == 422
    assert "<code>data.expires_at</code>" in r.text
    assert 'aria-invalid="true"' in r.text and "tomorrow" in r.text  # the edit is kept
    r = client.post(
        "/preview/brands/acme",
        data={"csrf": csrf, "event": RENEWAL, "lang": "fi", "data": "{broken", "action": "render"},
    )
    assert r.status_code == 422 and "not valid JSON" in r.text
    data["expires_at"] = "2026-12-30T12:00:00+02:00"
    data["domain"] = "kahvila-helmi.fi"
    r = client.post(
        "/preview/brands/acme",
        data={
            "csrf": csrf,
            "event": RENEWAL,
            "lang": "en",
            "data": json.dumps(data),
            "action": "render",
        },
    )
    assert r.status_code == 200 and "kahvila-helmi.fi" in r.text
    # the language switch keeps the edited data
    assert 'name="switch_lang" value="sv"' in r.text
    r = client.post(
        "/preview/brands/acme",
        data={
            "csrf": csrf,
            "event": RENEWAL,
            "lang": "en",
            "switch_lang": "sv",
            "data": json.dumps(data),
        },
    )
    assert "&lt;html lang=&#34;sv&#34;" in r.text  # the mail, inside srcdoc
    assert 'id="lang-sv" class="pill" aria-current="true"' in r.text
    assert "kahvila-helmi.fi" in r.text


def test_preview_forms_need_the_csrf_value(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    r = client.post("/preview/brands/acme", data={"event": RENEWAL, "data": "{}"})
    assert r.status_code == 403
    r = client.post("/preview/brands/acme", data={"csrf": "wrong", "event": RENEWAL})
    assert r.status_code == 403
    r = client.post(
        "/preview/brands/acme", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 415


def test_preview_download_eml(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    r = client.get(f"/preview/brands/acme/eml?event={RENEWAL}&lang=en")
    assert r.status_code == 200
    assert r.headers["content-type"] == "message/rfc822"
    assert r.headers["content-disposition"] == (
        'attachment; filename="acme-domain.renewal_reminder-en.eml"'
    )
    assert r.content.startswith(b"From: ") and b"\r\nContent-Language: en\r\n" in r.content
    csrf = _csrf(client.get("/preview/brands/acme").text)
    data = dict(catalog.CATALOG[RENEWAL].sample, domain="kahvila-helmi.fi")
    r = client.post(
        "/preview/brands/acme",
        data={
            "csrf": csrf,
            "event": RENEWAL,
            "lang": "fi",
            "data": json.dumps(data),
            "action": "eml",
        },
    )
    assert r.status_code == 200 and b"kahvila-helmi.fi" in r.content
    assert client.get("/preview/brands/acme/eml?event=nope").status_code == 404


def test_preview_send_test_goes_to_the_test_address_only_and_is_rate_limited(
    client: TestClient, tokens: Tokens
) -> None:
    _sign_in(client, tokens.acme)
    csrf = _csrf(client.get("/preview/brands/acme").text)
    form = {
        "csrf": csrf,
        "event": RENEWAL,
        "lang": "sv",
        "data": json.dumps(dict(catalog.CATALOG[RENEWAL].sample)),
        "action": "test",
        "recipient": "victim@example.com",
    }
    for _ in range(5):
        r = client.post("/preview/brands/acme", data=form)
        assert r.status_code == 200
        assert "A test message is on its way to testi@acme.fi." in r.text
    r = client.post("/preview/brands/acme", data=form)
    assert r.status_code == 429 and "Too many test messages" in r.text
    listed = client.get("/v1/messages", headers=tokens.h("admin")).json()["items"]
    assert len(listed) == 5
    assert {m["recipient"] for m in listed} == {"testi@acme.fi"}
    assert {m["language"] for m in listed} == {"sv"}


def test_preview_test_of_a_cancelling_event_keeps_the_sample_domain(
    client: TestClient, tokens: Tokens
) -> None:
    real = accept(client, tokens, event(key="real", domain="kahvila-helmi.fi"))
    _sign_in(client, tokens.acme)
    csrf = _csrf(client.get("/preview/brands/acme").text)
    data = dict(catalog.CATALOG["domain.renewed"].sample, domain="kahvila-helmi.fi")
    r = client.post(
        "/preview/brands/acme",
        data={
            "csrf": csrf,
            "event": "domain.renewed",
            "lang": "fi",
            "data": json.dumps(data),
            "action": "test",
        },
    )
    assert r.status_code == 409
    assert (
        client.get(f"/v1/messages/{real}", headers=tokens.h("admin")).json()["status"] == "queued"
    )


def test_preview_admin_sees_every_brand(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.admin)
    r = client.get("/preview")
    assert r.status_code == 200
    for brand in ("acme", "kustwebb", "nordname"):
        assert f'href="/preview/brands/{brand}"' in r.text
    assert client.get("/preview/brands/kustwebb").status_code == 200
    assert client.get("/preview/brands/nope").status_code == 404


def _capture(settings: Settings, name: str, to: str, subject: str) -> None:
    settings.mail_dir.mkdir(parents=True, exist_ok=True)
    (settings.mail_dir / name).write_bytes(
        f"From: Acme <a@acme.fi>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0200\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain body\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html body</p>"
        "<script>alert(1)</script>\r\n--b--\r\n".encode()
    )


def test_captured_mail_pages(client: TestClient, tokens: Tokens, settings: Settings) -> None:
    _capture(settings, "20261126T080000Z-1.eml", "testi@acme.fi", "For acme")
    _capture(settings, "20261126T080001Z-2.eml", "test@kustwebb.fi", "For kustwebb")
    (settings.mail_dir / ".tmp.eml").write_bytes(b"partial")
    _sign_in(client, tokens.acme)
    r = client.get("/preview/mail")
    assert r.status_code == 200
    assert "For acme" in r.text and "For kustwebb" not in r.text
    view = client.get("/preview/mail/20261126T080000Z-1.eml")
    assert view.status_code == 200
    assert "plain body" in view.text
    assert 'sandbox=""' in view.text and "&lt;script&gt;" in view.text
    assert "<script>" not in view.text
    raw = client.get("/preview/mail/20261126T080000Z-1.eml/raw")
    assert raw.status_code == 200 and raw.content.startswith(b"From: Acme")
    assert client.get("/preview/mail/20261126T080001Z-2.eml").status_code == 404
    for bad in ("..%2Fnotifier.db", ".tmp.eml", "nope.eml", "x.txt"):
        assert client.get(f"/preview/mail/{bad}").status_code == 404
    client.cookies.clear()
    _sign_in(client, tokens.admin)
    r = client.get("/preview/mail")
    assert "For acme" in r.text and "For kustwebb" in r.text


def test_captured_mail_is_absent_when_relaying(tmp_path: Any) -> None:
    settings = Settings(var_dir=tmp_path / "var", smtp_url="smtp://relay.example.fi:25")
    app = create_app(settings)
    with TestClient(app) as c:
        secret = app.state.tokens.create(["admin"])[1]
        _sign_in(c, secret)
        assert c.get("/preview/mail").status_code == 404
        assert "/preview/mail" not in c.get("/preview/brands/acme").text


def test_sign_out(client: TestClient, tokens: Tokens) -> None:
    _sign_in(client, tokens.acme)
    csrf = _csrf(client.get("/preview/brands/acme").text)
    r = client.post("/preview/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert 'id="sign-in"' in client.get("/preview").text


# --- units: tokens, sessions, languages, cursors, limiter -----------------------------------


def test_tokens_are_stored_only_as_hashes(client: TestClient, settings: Settings) -> None:
    store: TokenStore = client.app.state.tokens  # type: ignore[attr-defined]
    record, secret = store.create(["events:write", "messages:read"], brand="acme", label="billing")
    assert token_id_of(secret) == record.id
    db = sqlite3.connect(settings.var_dir / "notifier.db")
    try:
        rows = db.execute("SELECT * FROM api_tokens").fetchall()
    finally:
        db.close()
    dumped = json.dumps(rows)
    # the part after "nt_<id>_" (which may itself hold "_"), not only the last "_" piece
    assert secret not in dumped and secret.split("_", 2)[2] not in dumped
    assert hash_token(secret) in dumped
    assert store.authenticate(secret) == record
    assert [t.id for t in store.list()] == [record.id]
    assert store.revoke(record.id) and not store.revoke(record.id)
    assert store.authenticate(secret) is None
    assert store.list()[0].revoked_at is not None


@pytest.mark.parametrize(
    ("scopes", "brand"),
    [([], None), (["root"], None), (["admin"], "acme"), ([" "], None)],
)
def test_token_scopes_are_checked(client: TestClient, scopes: list[str], brand: str | None) -> None:
    with pytest.raises(ValidationError):
        client.app.state.tokens.create(scopes, brand=brand)  # type: ignore[attr-defined]


def test_session_signature_and_expiry() -> None:
    key = session_key(b"secret")
    s = Session("abc", "acme", "csrf", 1000)
    value = dump(key, s)
    assert load(key, value, now=999) == s
    assert load(key, value, now=1001) is None
    assert load(session_key(b"other"), value, now=999) is None
    payload, mac = value.split(".")
    assert load(key, payload[:-2] + "xx." + mac, now=999) is None
    assert load(key, "no-dot", now=999) is None


def test_accept_language() -> None:
    assert parse_accept_language("sv-FI,sv;q=0.9,en;q=0.5") == ["sv", "sv", "en"]
    assert parse_accept_language("en;q=0.1, fi") == ["fi", "en"]
    assert choose("de, sv;q=0.5") == "sv"
    assert choose("de") == "en"
    assert choose(None, ["sv", "fi"], "sv") == "sv"
    assert choose("en;q=oops, fi;q=0") == "en"


def test_cursor_roundtrip() -> None:
    assert decode_cursor(encode_cursor(42)) == 42
    for bad in ("", "x", encode_cursor(0), "eyJiZWZvcmUiOiB0cnVlfQ"):
        with pytest.raises(ValidationError):
            decode_cursor(bad)


def test_rate_limiter_window() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0
    assert limiter.hit("a") == 60
    assert limiter.hit("b") == 0
    now[0] = 61
    assert limiter.hit("a") == 0


# --- CLI ----------------------------------------------------------------------------------


def test_cli_token_create_list_revoke(env_var_dir: Any) -> None:
    import typer

    from notifier.cli import serve, tokens

    app = typer.Typer()
    serve.register(app)
    tokens.register(app)
    runner = CliRunner()
    created = runner.invoke(
        app,
        [
            "token",
            "create",
            "--scope",
            "messages:read",
            "--brand",
            "acme",
            "--label",
            "acme preview",
        ],
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("nt_")
    listed = runner.invoke(app, ["token", "list", "--json"])
    records = json.loads(listed.stdout)
    assert records[0]["brand"] == "acme" and records[0]["scopes"] == ["messages:read"]
    assert secret not in listed.stdout
    bad = runner.invoke(app, ["token", "create", "--scope", "admin", "--brand", "acme"])
    assert bad.exit_code == 2
    unknown = runner.invoke(app, ["token", "create", "--scope", "events:write", "--brand", "nope"])
    assert unknown.exit_code == 2 and "unknown brand" in unknown.output
    revoked = runner.invoke(app, ["token", "revoke", records[0]["id"]])
    assert revoked.exit_code == 0
    assert runner.invoke(app, ["token", "revoke", records[0]["id"]]).exit_code == 1
    assert "serve" in runner.invoke(app, ["--help"]).stdout


def test_serve_refuses_bad_settings_with_a_message(
    env_var_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from notifier.cli import app

    def never(self: Any) -> None:
        raise AssertionError("serve started with bad settings")

    monkeypatch.setattr(uvicorn.Server, "run", never)  # a regression fails, never hangs
    monkeypatch.setenv("NOTIFIER_INTAKE_PROCESSES", "many")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "NOTIFIER_INTAKE_PROCESSES: a number of processes, or auto" in result.output
    monkeypatch.delenv("NOTIFIER_INTAKE_PROCESSES")
    result = CliRunner().invoke(app, ["serve", "--intake-processes", "-1"])
    assert result.exit_code == 2 and "intake-processes" in result.output
    result = CliRunner().invoke(app, ["serve", "--worker-processes", "-1"])
    assert result.exit_code == 2 and "worker-processes" in result.output
    monkeypatch.setenv("NOTIFIER_WORKER_PROCESSES", "-2")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2 and "NOTIFIER_WORKER_PROCESSES" in result.output


def test_store_unavailable_when_the_outbox_cannot_open(tmp_path: Any) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    settings = Settings(var_dir=tmp_path / "elsewhere", database_url=f"sqlite:///{blocker}/db")
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        r = c.post("/v1/events", json=event(), headers={"Authorization": "Bearer nt_x"})
        assert r.status_code == 401  # a malformed token never reaches the database
        r = c.post(
            "/v1/events",
            json=event(),
            headers={"Authorization": "Bearer nt_aaaaaaaaaa_" + "A" * 43},
        )
        assert r.status_code == 503


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg_settings(tmp_path: Any) -> Iterator[Settings]:
    """Settings on a fresh schema of the test PostgreSQL (NOTIFIER_TEST_DATABASE_URL)."""
    with postgres_schema("api") as url:
        yield Settings(var_dir=tmp_path / "var", database_url=url)


def test_postgres_tokens_intake_and_isolation(pg_settings: Settings) -> None:
    app = create_app(pg_settings)
    with TestClient(app) as c:
        store: TokenStore = app.state.tokens
        record, admin = store.create(["admin"])
        acme = store.create(["messages:read", "events:write"], brand="acme")[1]
        assert store.authenticate(admin) == record
        h = {"Authorization": f"Bearer {admin}"}
        r = c.post("/v1/events", json=event(brand="kustwebb", key="pg"), headers=h)
        assert r.status_code == 202
        theirs = r.json()["id"]
        assert (
            c.post("/v1/events", json=event(brand="kustwebb", key="pg"), headers=h).status_code
            == 200
        )
        r = c.post(
            "/v1/events/batch",
            json={"events": [event(key="pg-a"), event(key="pg-b", expires_at="x")]},
            headers={"Authorization": f"Bearer {acme}"},
        )
        assert [x["result"] for x in r.json()["results"]] == ["accepted", "error"]
        ours = r.json()["results"][0]["id"]
        ha = {"Authorization": f"Bearer {acme}"}
        assert c.get(f"/v1/messages/{theirs}", headers=ha).status_code == 404
        assert [m["id"] for m in c.get("/v1/messages", headers=ha).json()["items"]] == [ours]
        assert "notifier_queue_depth 2" in c.get("/metrics", headers=h).text
        assert c.get("/readyz").status_code == 200
        assert store.revoke(record.id)
        assert c.get("/v1/messages", headers=h).status_code == 401


def test_concurrent_single_events_share_commits(settings: Settings) -> None:
    import asyncio

    import httpx

    app = create_app(settings)
    store = app.state.store
    secret = app.state.tokens.create(["admin"])[1]
    calls: list[int] = []
    original = store._accept_batch

    def counting(raws: list[Any]) -> Any:
        calls.append(len(raws))
        return original(raws)

    store._accept_batch = counting
    bodies = [event(key=f"g{i}", email=f"g{i}@example.fi") for i in range(40)]
    bodies += [event(key="bad", expires_at="x"), event(key="g0", email="g0@example.fi")]

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            h = {"Authorization": f"Bearer {secret}"}
            try:
                return await asyncio.gather(
                    *(c.post("/v1/events", json=b, headers=h) for b in bodies)
                )
            finally:
                await store.close()

    responses = asyncio.run(post_all())
    codes = [r.status_code for r in responses]
    assert codes[:40].count(202) + codes[41:].count(202) == 40
    assert codes[40] == 422
    assert responses[40].json()["detail"][0]["field"] == "data.expires_at"
    assert responses[41].json()["id"] == responses[0].json()["id"]
    assert sum(calls) == len(bodies) and len(calls) < len(bodies)
