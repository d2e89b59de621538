"""Issue 10 §1: every string the service accepts is text UTF-8 can encode, every number
one Python can hold — otherwise a 422 naming the field, never a 500.

JSON's ``"\\ud800"`` decodes to an unpaired surrogate; it used to pass validation and
fail later (rendering, hashing, storing) as a 500. The bodies here are sent as bytes
with ASCII escapes, the way a hostile client writes them.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifier import events as catalog
from notifier.api import create_app
from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.errors import ValidationError
from notifier.fields import LongNumber, check_tree, decode_json

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

BAD = "x\ud800y"
RENEWAL = "domain.renewal_reminder"
LONG = "1" * (sys.get_int_max_str_digits() + 1)


def event(name: str = RENEWAL, brand: str = "acme", email: str = "aino@example.fi") -> Any:
    return {
        "event": name,
        "brand": brand,
        "recipient": {"email": email, "name": "Aino Virtanen", "language": "fi"},
        "data": copy.deepcopy(dict(catalog.CATALOG[name].sample)),
        "idempotency_key": f"k-{email}",
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to an event body at a dotted path (``data.contact.address[1]``)."""

    def change(body: dict[str, Any]) -> None:
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        node: Any = body
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        last = parts[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value

    return change


#: (event, change, the field the 422 names)
CASES: list[tuple[str, str, Any]] = [
    (RENEWAL, "recipient.name", BAD),
    (RENEWAL, "recipient.email", f"a{BAD}@example.fi"),
    (RENEWAL, "idempotency_key", BAD),
    (RENEWAL, "brand", BAD),
    (RENEWAL, "event", BAD),
    (RENEWAL, "data.domain", BAD),
    ("reseller.action_required", "data.description", BAD),
    ("whois.data_reminder", "data.contact.name", BAD),
    ("whois.data_reminder", "data.contact.address[1]", BAD),  # a nested list
    ("reseller.order_placed", "data.items[1].operation", BAD),
    (RENEWAL, "data.not_a_field", [1, {"deep": BAD}]),  # unknown fields too
]


def _body(name: str, path: str, value: Any) -> dict[str, Any]:
    body = event(name)
    _set(path, value)(body)
    return body


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode("ascii")  # ensure_ascii: the surrogate as \ud800


def _expected(path: str, value: Any) -> str:
    return f"{path}[1].deep" if isinstance(value, list) else path


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    secret = client.app.state.tokens.create(["admin"])[1]  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def _count(client: TestClient) -> int:
    box = client.app.state.store.outbox  # type: ignore[attr-defined]
    with box.transaction(write=False) as cur:
        return int(cur.execute("SELECT COUNT(*) FROM outbox_messages").fetchone()[0])


@pytest.mark.parametrize(("name", "path", "value"), CASES, ids=[c[1] for c in CASES])
def test_a_surrogate_in_any_field_is_a_422_naming_it(
    client: TestClient, admin: dict[str, str], name: str, path: str, value: Any
) -> None:
    r = client.post("/v1/events", content=_bytes(_body(name, path, value)), headers=admin)
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["detail"]]
    assert _expected(path, value) in fields
    assert "Unicode" in r.text
    assert _count(client) == 0


@pytest.mark.parametrize(("name", "path", "value"), CASES, ids=[c[1] for c in CASES])
def test_a_surrogate_in_a_batch_is_that_items_error(
    client: TestClient, admin: dict[str, str], name: str, path: str, value: Any
) -> None:
    items = [event(email="a@example.fi"), _body(name, path, value), event(email="c@example.fi")]
    r = client.post("/v1/events/batch", content=_bytes({"events": items}), headers=admin)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["result"] for x in results] == ["accepted", "error", "accepted"]
    assert results[1]["error"] == "validation_error"
    assert f"events[1].{_expected(path, value)}" in [d["field"] for d in results[1]["detail"]]
    assert _count(client) == 2


def test_a_surrogate_in_a_field_name_is_named_escaped(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = event()
    body["data"][BAD] = 1
    r = client.post("/v1/events", content=_bytes(body), headers=admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "data.x\\ud800y"
    batch = {BAD: [], "events": [event()]}
    r = client.post("/v1/events/batch", content=_bytes(batch), headers=admin)
    assert r.status_code == 422  # the answer echoing the bad name is still sent
    assert r.json()["detail"] == [{"field": "x\\ud800y", "message": "unknown field"}]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (f'"years": {LONG}', "data.years", "number too long"),
        (f'"extra": [{LONG}]', "data.extra[0]", "number too long"),
        ('"years": 1e999', "data.years", "finite"),
        ('"years": NaN', "data.years", "finite"),
        ('"years": -Infinity', "data.years", "finite"),
    ],
)
def test_numbers_python_cannot_hold_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], text: str, field: str, message: str
) -> None:
    body = event()
    del body["data"]["years"]
    raw = _bytes(body).replace(b'"data": {', b'"data": {' + text.encode() + b", ")
    r = client.post("/v1/events", content=raw, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == field and message in r.text
    batch = b'{"events": [' + raw + b", " + _bytes(event(email="b@example.fi")) + b"]}"
    r = client.post("/v1/events/batch", content=batch, headers=admin)
    assert [x["result"] for x in r.json()["results"]] == ["error", "accepted"]
    assert r.json()["results"][0]["detail"][0]["field"] == f"events[0].{field}"


def test_a_long_integer_outside_any_event_names_the_body_part(
    client: TestClient, admin: dict[str, str]
) -> None:
    r = client.post("/v1/events", content=LONG.encode(), headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body"


# --- the preview ----------------------------------------------------------------------------


def _sign_in(client: TestClient) -> str:
    """Sign in as acme; the CSRF value of the brand page."""
    secret = client.app.state.tokens.create(  # type: ignore[attr-defined]
        ["events:write", "messages:read"], brand="acme"
    )[1]
    page = client.get("/preview").text
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page))
    origin = {"Origin": str(client.base_url).rstrip("/")}
    r = client.post(
        "/preview/login", data={**hidden, "token": secret}, headers=origin, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    m = re.search(r'name="csrf" value="([^"]+)"', client.get("/preview/brands/acme").text)
    assert m
    return m.group(1)


@pytest.mark.parametrize("action", ["render", "eml", "test"])
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('"domain": "x\\ud800y"', "data.domain"),
        ('"extra": {"deep": ["\\udfff"]}', "data.extra.deep[0]"),
        (f'"years": {LONG}', "data.years"),
    ],
)
def test_the_preview_shows_the_field_error_not_a_500(
    client: TestClient, action: str, text: str, field: str
) -> None:
    csrf = _sign_in(client)
    data = dict(catalog.CATALOG[RENEWAL].sample)
    data.pop(field.split(".")[1].split("[")[0], None)
    data_text = "{" + text + ", " + json.dumps(data)[1:]
    r = client.post(
        "/preview/brands/acme",
        data={"csrf": csrf, "event": RENEWAL, "lang": "fi", "data": data_text, "action": action},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert 400 <= r.status_code < 500, r.text[:500]
    assert f"<code>{field}</code>" in r.text


# --- the boundary itself ------------------------------------------------------------------


def test_check_tree_names_every_problem_once() -> None:
    tree = decode_json(
        '{"a": "ok", "b": ["\\ud83d"], "c": {"\\udc00": 1}, "d": NaN, "e": ' + LONG + "}"
    )
    assert isinstance(tree["e"], LongNumber)
    assert [e.loc for e in check_tree(tree, "events[2]")] == [
        "events[2].b[0]",
        "events[2].c.\\udc00",
        "events[2].d",
        "events[2].e",
    ]
    # a properly paired surrogate in JSON is one character: valid
    assert check_tree(decode_json('"\\ud83d\\ude00"')) == []
    # as deep as the decoder allows, no RecursionError
    deep = decode_json("[" * 900 + '"\\ud800"' + "]" * 900)
    assert len(check_tree(deep)) == 1


def test_every_door_checks_the_tree(pipeline: Pipeline) -> None:
    """The CLI and the preview build raw events themselves: the pipeline's validate stage
    checks the tree whatever the door."""
    body = event()
    body["recipient"]["name"] = BAD
    with pytest.raises(ValidationError) as caught:
        pipeline.prepare(body, "events[4]")
    assert [e.loc for e in caught.value.errors] == ["events[4].recipient.name"]
