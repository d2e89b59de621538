"""``/v1/webhooks``: admin only, the secret shown once, bad input a 422 naming the
field, endpoints in /metrics — and the one-click unsubscribe reported as a webhook event."""

from __future__ import annotations

import warnings

from standardwebhooks.webhooks import Webhook

from tests.api.conftest import Tokens
from tests.feedback.webhooks.conftest import dispatch
from tests.feedback.webhooks.receiver import Receiver

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


def test_create_list_rotate_disable(client: TestClient, tokens: Tokens) -> None:
    body = {"url": "https://hooks.registry.example/mail", "events": ["message.sent"]}
    assert client.post("/v1/webhooks", json=body, headers=tokens.h("writer")).status_code == 403
    assert client.post("/v1/webhooks", json=body).status_code == 401
    created = client.post("/v1/webhooks", json=body, headers=tokens.h("admin"))
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["state"] == "enabled"
    listed = client.get("/v1/webhooks", headers=tokens.h("admin")).json()["items"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "whsec_" not in client.get("/v1/webhooks", headers=tokens.h("admin")).text
    url = f"/v1/webhooks/{endpoint['id']}"
    rotated = client.post(f"{url}/rotate-secret", json={"grace": "1h"}, headers=tokens.h("admin"))
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (endpoint["secret"], None)
    assert rotated.json()["rotation_ends_at"]
    disabled = client.post(f"{url}/disable", json={"reason": "moved"}, headers=tokens.h("admin"))
    assert disabled.json()["state"] == "disabled" and disabled.json()["disabled_reason"] == "moved"
    assert client.post(f"{url}/enable", headers=tokens.h("admin")).json()["state"] == "enabled"
    assert client.get("/v1/webhooks/999", headers=tokens.h("admin")).status_code == 404
    metrics = client.get("/metrics", headers=tokens.h("admin")).text
    assert (
        f'notifier_webhook_endpoint_enabled{{endpoint="{endpoint["id"]}",reason=""}} 1.0' in metrics
    )


def test_bad_input_names_the_field(client: TestClient, tokens: Tokens) -> None:
    cases = [
        ({"url": "ftp://x.example/", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1/hook", "events": ["*"]}, "url"),
        ({"url": "http://169.254.169.254/latest", "events": ["*"]}, "url"),
        ({"url": "https://x.example/", "events": ["message.opened"]}, "events"),
        ({"url": "https://x.example/", "events": ["*"], "brand": "nobody"}, "brand"),
        ({"events": ["*"]}, "url"),
    ]
    for body, field in cases:
        answer = client.post("/v1/webhooks", json=body, headers=tokens.h("admin"))
        assert answer.status_code == 422, (body, answer.text)
        assert field in {p["field"] for p in answer.json()["detail"]}, answer.text
    replay = client.post("/v1/webhooks/replay", json={"since": "soon"}, headers=tokens.h("admin"))
    assert replay.status_code == 422 and replay.json()["detail"][0]["field"] == "since"


def test_unsubscribe_reported(client: TestClient, tokens: Tokens) -> None:
    from notifier.compose import unsubscribe as links

    app = client.app
    settings = app.state.settings  # type: ignore[attr-defined]
    outbox = app.state.store.outbox  # type: ignore[attr-defined]
    receiver = Receiver()
    try:
        from tests.feedback.webhooks.conftest import add

        _, secret = add(outbox, receiver.url, "message.unsubscribed")
        sub = links.Subscription("acme", "aino@example.fi", "reseller.balance_low")
        token = links.make_token(settings.secret(), sub)
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        dispatch(outbox)
        [got] = receiver.received
        payload = Webhook(str(secret)).verify(got.body, got.headers)
        assert payload["type"] == "message.unsubscribed"
        assert payload["data"]["recipient"] == "aino@example.fi"
    finally:
        receiver.close()
