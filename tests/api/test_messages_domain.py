"""``GET /v1/messages?domain=``: what did we send about example.fi? Any case or
Unicode form finds the stored A-label; a bad name is a 422 naming the field."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import Tokens
from tests.api.test_api import accept, event


def test_list_messages_by_domain(client: TestClient, tokens: Tokens) -> None:
    one = accept(client, tokens, event(key="a", domain="example.fi"))
    two = accept(client, tokens, event(key="b", domain="Ääkkönen.FI"))
    other = accept(client, tokens, event(key="c", domain="other.fi", days_left=7))
    mine = accept(client, tokens, event(brand="kustwebb", key="k", domain="example.fi"), "kustwebb")
    h = tokens.h("admin")
    found = client.get("/v1/messages?domain=EXAMPLE.fi", headers=h).json()
    assert [m["id"] for m in found["items"]] == [mine, one]
    found = client.get("/v1/messages?domain=ääkkönen.fi", headers=h).json()
    assert [m["id"] for m in found["items"]] == [two]
    page = client.get("/v1/messages?domain=example.fi&limit=1", headers=h).json()
    assert [m["id"] for m in page["items"]] == [mine]
    rest = client.get(
        f"/v1/messages?domain=example.fi&limit=1&cursor={page['next_cursor']}", headers=h
    ).json()
    assert [m["id"] for m in rest["items"]] == [one] and rest["next_cursor"] is None
    # a reseller sees its own brand's mail about the domain only
    seen = client.get("/v1/messages?domain=example.fi", headers=tokens.h("acme")).json()
    assert [m["id"] for m in seen["items"]] == [one]
    assert other not in [m["id"] for m in seen["items"]]
    for bad in ("exa mple.fi", "-bad-.fi", "a" * 254):
        r = client.get("/v1/messages", params={"domain": bad}, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["field"] == "domain"
