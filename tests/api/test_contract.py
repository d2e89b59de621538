"""The OpenAPI contract (``notifier.api.contract``) and the offline ``/docs`` page.

The document is checked for what generated clients need (short operation ids, a
response model for every operation, the project's own error model, one schema per
event), real answers are checked against the documented models, and a client generated
by openapi-python-client posts an event to ``notifier serve`` and reads it back.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from notifier import events as catalog
from notifier.api import contract
from notifier.api.store import open_store
from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings
from notifier.signing.keys import KeyStore
from notifier.tokens import TokenStore

from .conftest import Tokens, serving
from .test_api import RENEWAL, Status, accept, event, finish

OPERATIONS = {
    ("post", "/v1/events"): "post_event",
    ("post", "/v1/events/batch"): "post_batch",
    ("get", "/v1/events/catalog"): "get_catalog",
    ("get", "/v1/messages"): "list_messages",
    ("get", "/v1/messages/{message_id}"): "get_message",
    ("post", "/v1/messages/{message_id}/retry"): "retry_message",
    ("get", "/v1/brands/{brand_id}/dns"): "get_brand_dns",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("post", "/v1/brands/{brand_id}/dns-check"): "check_brand_dns",
    ("post", "/v1/webhooks"): "create_webhook",
    ("get", "/v1/webhooks"): "list_webhooks",
    ("get", "/v1/webhooks/{endpoint_id}"): "get_webhook",
    ("post", "/v1/webhooks/{endpoint_id}/disable"): "disable_webhook",
    ("post", "/v1/webhooks/{endpoint_id}/enable"): "enable_webhook",
    ("post", "/v1/webhooks/{endpoint_id}/rotate-secret"): "rotate_webhook_secret",
    ("post", "/v1/webhooks/replay"): "replay_webhooks",
}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# --- the document --------------------------------------------------------------------------


def test_every_operation_has_its_short_id(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    found = {(m, p): op["operationId"] for m, p, op in _operations(doc)}
    assert found == OPERATIONS


def test_every_answer_has_a_model_and_errors_the_real_shape(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(doc)
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        ok = [s for s in responses if s.startswith("2")]
        assert ok, (method, path)
        for status, response in responses.items():
            content = response.get("content", {})
            assert content, (method, path, status)
            schema = next(iter(content.values()))["schema"]
            if path == "/metrics" and status == "200":
                assert "text/plain" in content
            elif status[0] in "45" and path != "/readyz":
                assert schema == _ref("ErrorOut"), (method, path, status)
            else:
                assert "$ref" in schema, (method, path, status)
    messages = doc["paths"]["/v1/messages/{message_id}"]
    assert messages["get"]["responses"]["200"]["content"]["application/json"]["schema"] == _ref(
        "MessageOut"
    )
    retry = doc["paths"]["/v1/messages/{message_id}/retry"]["post"]
    assert retry["responses"]["200"]["content"]["application/json"]["schema"] == _ref("MessageOut")
    page = doc["components"]["schemas"]["MessagePage"]
    assert page["properties"]["items"]["items"] == _ref("MessageOut")


def test_event_bodies_are_a_union_on_event_with_each_events_data(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    union = schemas["EventIn"]
    assert union["discriminator"]["propertyName"] == "event"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(catalog.CATALOG)
    for name, spec in catalog.CATALOG.items():
        variant = schemas[mapping[name].rsplit("/", 1)[1]]
        assert variant["properties"]["event"]["const"] == name
        data = schemas[variant["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
        assert set(data["properties"]) == set(spec.model.model_fields)
    batch = schemas["BatchIn"]["properties"]["events"]
    assert batch["items"] == {"$ref": "#/components/schemas/EventIn"} or (
        batch["items"].get("discriminator", {}).get("mapping") == mapping
    )
    assert batch["maxItems"] == 1000


def test_request_examples_are_accepted(client: TestClient, tokens: Tokens) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    examples = body["examples"]
    assert set(examples) == set(catalog.CATALOG)
    for name, example in examples.items():
        contract.EventIn.model_validate(example["value"])  # the documented model takes it
        r = client.post("/v1/events", json=example["value"], headers=tokens.h("admin"))
        assert r.status_code == 202, (name, r.text)
    batch = doc["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    for example in batch["examples"].values():
        contract.BatchIn.model_validate(example["value"])
        r = client.post("/v1/events/batch", json=example["value"], headers=tokens.h("admin"))
        assert r.status_code == 200 and r.json()["errors"] == 0, r.text


# --- real answers match the documented models ----------------------------------------------


def _conforms(model: type[BaseModel], doc: Any) -> BaseModel:
    """``doc`` validates against ``model`` and holds no field the model does not name."""
    parsed = model.model_validate(doc)
    names = {f.alias or n for n, f in model.model_fields.items()}
    assert set(doc) <= names, sorted(set(doc) - names)
    for name, info in model.model_fields.items():
        value = getattr(parsed, name)
        if isinstance(value, BaseModel):
            _conforms(type(value), doc[info.alias or name])
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for item, raw in zip(value, doc[info.alias or name], strict=True):
                _conforms(type(item), raw)
    return parsed


def test_answers_match_the_documented_models(client: TestClient, tokens: Tokens) -> None:
    mid = accept(client, tokens, event(key="doc-1"))
    finish(client, Status.FAILED)
    for who in ("admin", "reader"):
        doc = client.get(f"/v1/messages/{mid}", headers=tokens.h(who)).json()
        message = _conforms(contract.MessageOut, doc)
        assert isinstance(message, contract.MessageOut)
        assert message.attempt_log and isinstance(message.attempt_log[0].at, datetime)
        page = client.get("/v1/messages", headers=tokens.h(who)).json()
        _conforms(contract.MessagePage, page)
    retried = client.post(f"/v1/messages/{mid}/retry", headers=tokens.h("admin")).json()
    _conforms(contract.MessageOut, retried)
    r = client.post(
        "/v1/events/batch",
        json={"events": [event(key="doc-2", email="b@example.fi"), {"event": "x"}]},
        headers=tokens.h("admin"),
    )
    _conforms(contract.BatchOut, r.json())
    assert [x["result"] for x in r.json()["results"]] == ["accepted", "error"]
    single = client.post(
        "/v1/events", json=event(key="doc-3", email="c@example.fi"), headers=tokens.h("admin")
    )
    _conforms(contract.AcceptedOut, single.json())
    _conforms(
        contract.CatalogOut, client.get("/v1/events/catalog", headers=tokens.h("admin")).json()
    )
    for path, status in (("/v1/messages/999", 404), ("/v1/messages?limit=0", 422)):
        r = client.get(path, headers=tokens.h("admin"))
        assert r.status_code == status
        _conforms(contract.ErrorOut, r.json())
    _conforms(contract.HealthOut, client.get("/healthz").json())
    _conforms(contract.ReadyOut, client.get("/readyz").json())


# --- /docs with no network -----------------------------------------------------------------


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def test_docs_served_by_the_app_with_no_external_url(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "//" not in page.text, "an absolute or scheme-relative URL on /docs"
    parser = _Refs()
    parser.feed(page.text)
    assert len(parser.refs) >= 3  # the CSS, the favicon and the bundle
    seen = []
    for ref in parser.refs:
        url = urljoin("http://testserver/docs", ref)
        assert urlsplit(url).netloc == "testserver", ref
        r = client.get(urlsplit(url).path)
        assert r.status_code == 200 and r.content, ref
        seen.append(urlsplit(url).path)
        if ref.endswith(".css"):  # what the stylesheet loads in turn
            for inner in re.findall(r"url\(\s*['\"]?([^'\")]+)", r.text):
                assert inner.startswith("data:"), inner
    assert any(p.endswith("swagger-ui-bundle.js") for p in seen)
    assert any(p.endswith("swagger-ui.css") for p in seen)
    # the page asks for the app's own document
    assert re.search(r"url: '/openapi\.json'", page.text)
    assert '"validatorUrl": null' in page.text  # no badge from the public validator


# --- a generated client against notifier serve ---------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("contract")
    settings = Settings(var_dir=root / "var", secret_key=Secret("contract"))
    platform = Pipeline(settings).brands.platform
    selector = platform.active_selector()
    assert selector is not None
    KeyStore(settings.keys_path).generate(platform, selector.name, bits=2048)
    store = open_store(settings, Pipeline(settings))
    admin = TokenStore(store).create(["admin"], label="generated client")[1]
    store.outbox.close()  # type: ignore[attr-defined]
    env = {
        "NOTIFIER_VAR_DIR": str(settings.var_dir),
        "NOTIFIER_SECRET_KEY": "contract",
        "NOTIFIER_CONFIG": str(root / "absent.toml"),
    }
    with serving(root, env) as url:
        yield url, admin


#: openapi-python-client lives in its own virtualenv (scripts/test makes it): it pins an
#: older typer than the CLI uses, so it cannot share the project's
GENERATOR = Path(
    os.environ.get(
        "NOTIFIER_TEST_OPENAPI_GENERATOR",
        Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "openapi-python-client",
    )
)


def _generate(url: str, out: Path) -> None:
    assert GENERATOR.exists(), f"{GENERATOR} is missing: run scripts/test (it installs it)"
    spec = out / "openapi.json"
    spec.write_bytes(httpx.get(f"{url}/openapi.json", timeout=30).content)
    config = out / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no formatter needed to import it
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(out / "notifier_client"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_generated_client_posts_an_event_and_reads_it_back(
    served: tuple[str, str], tmp_path: Path
) -> None:
    url, admin = served
    _generate(url, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        gen = importlib.import_module("notifier_client")
        v1 = {
            op: importlib.import_module(f"notifier_client.api.v1.{op}")
            for (_, path), op in OPERATIONS.items()
            if path.startswith("/v1/")
        }
        ops = {
            op: importlib.import_module(f"notifier_client.api.ops.{op}")
            for (_, path), op in OPERATIONS.items()
            if not path.startswith("/v1/")
        }
        models = importlib.import_module("notifier_client.models")
        with gen.AuthenticatedClient(base_url=url, token=admin) as client:
            body = models.DomainRenewalReminderEvent.from_dict(
                contract.event_example(RENEWAL, key="generated-1")
            )
            accepted = v1["post_event"].sync(client=client, body=body)
            assert isinstance(accepted, models.AcceptedOut), accepted
            assert accepted.status == "queued" and accepted.language == "fi"

            message = v1["get_message"].sync(accepted.id, client=client)
            assert isinstance(message, models.MessageOut), message
            assert message.id == accepted.id
            assert message.event == RENEWAL and message.brand == "acme"
            assert message.recipient == "aino.virtanen@example.fi"
            assert isinstance(message.created_at, datetime)
            assert isinstance(message.status, models.Status)
            assert re.fullmatch(r"<[0-9a-f]{32}@[a-z0-9.-]+>", message.message_id)

            page = v1["list_messages"].sync(client=client, brand="acme")
            assert isinstance(page, models.MessagePage)
            assert [m.id for m in page.items] == [accepted.id]
            assert isinstance(page.items[0], models.MessageOut)

            missing = v1["get_message"].sync(999_999, client=client)
            assert isinstance(missing, models.ErrorOut)
            assert missing.error == "not_found"

            batch = v1["post_batch"].sync(
                client=client,
                body=models.BatchIn(
                    events=[
                        models.DomainRenewalReminderEvent.from_dict(
                            contract.event_example(RENEWAL, key="generated-1")
                        )
                    ]
                ),
            )
            assert isinstance(batch, models.BatchOut)
            assert (batch.duplicates, batch.results[0].id) == (1, accepted.id)
            health = ops["healthz"].sync(client=client)
            assert isinstance(health, models.HealthOut)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "notifier_client"]:
            del sys.modules[name]
