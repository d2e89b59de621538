"""Recording a check at once: ``notifier dns check --apply`` and the admin API call
``POST /v1/brands/{id}/dns-check``, against a real dnsmasq; the state in ``/metrics``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.api import create_app
from notifier.cli import app
from notifier.outbox import Status, open_outbox
from tests.conftest import postgres_schema
from tests.dns.support import World
from tests.test_outbox import raw_event

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with postgres_schema("dnsdoor") as url:
        yield url


def test_cli_apply_records_the_check_and_prints_the_state(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = world.settings(database_url=db_url)
    for name, value in {
        "NOTIFIER_VAR_DIR": settings.var_dir,
        "NOTIFIER_KEY_DIR": world.key_dir,
        "NOTIFIER_BRANDS_DIR": world.brands_dir,
        "NOTIFIER_DATABASE_URL": db_url,
        "NOTIFIER_DNS_NAMESERVER": world.zone.nameserver,
        "NOTIFIER_SECRET_KEY": "test-secret",
    }.items():
        monkeypatch.setenv(name, str(value))
    world.publish(kustwebb={})

    dry = runner.invoke(app, ["dns", "check", "--brand", "kustwebb"])
    assert dry.exit_code == 0, dry.output
    with open_outbox(settings) as outbox:
        assert outbox.brand_dns("kustwebb") is None  # without --apply nothing is recorded

    done = runner.invoke(app, ["dns", "check", "--brand", "kustwebb", "--apply", "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert (doc["previous"], doc["state"]["state"], doc["changed"]) == (
        "unverified",
        "verified",
        True,
    )
    assert doc["outcome"] == "ok" and doc["state"]["records"] == doc["checks"]

    world.publish(kustwebb={"dkim": False})
    text = runner.invoke(app, ["dns", "check", "--brand", "kustwebb", "--apply"])
    assert text.exit_code == 1, text.output
    assert "Recorded: fail; state verified → broken-pending" in text.stdout
    assert "one more failing check" in text.stdout
    with open_outbox(settings) as outbox:
        state = outbox.brand_dns("kustwebb")
        assert state is not None and (state.state, state.failures) == ("broken-pending", 1)
        assert [h.source for h in outbox.brand_dns_history("kustwebb")] == ["cli", "cli"]

    unknown = runner.invoke(app, ["dns", "check", "--brand", "nope", "--apply"])
    assert unknown.exit_code == 2 and "unknown brand" in unknown.output

    # where each brand stands, from the outbox (no DNS asked): what decides its sender
    status = runner.invoke(app, ["dns", "status", "--json", "--history", "5"])
    assert status.exit_code == 0, status.output
    rows = {r["brand"]: r for r in json.loads(status.stdout)}
    assert (rows["kustwebb"]["state"], rows["kustwebb"]["failures"]) == ("broken-pending", 1)
    assert rows["kustwebb"]["verified"] is True  # still signs as itself until the next fail
    assert [h["outcome"] for h in rows["kustwebb"]["history"]] == ["fail", "ok"]
    assert rows["acme"]["state"] is None and rows["acme"]["effective"] == "unverified"
    table = runner.invoke(app, ["dns", "status", "--brand", "kustwebb"])
    assert table.exit_code == 0 and "broken-pending" in table.stdout
    assert "acme" not in table.stdout
    missing = runner.invoke(app, ["dns", "status", "--brand", "nope"])
    assert missing.exit_code == 2 and "unknown brand" in missing.output


def test_admin_api_records_a_check_releases_held_mail_and_reports_metrics(
    world: World, db_url: str
) -> None:
    settings = world.settings(database_url=db_url)
    world.publish(kustwebb={"dkim": False})
    with TestClient(create_app(settings)) as client:
        tokens = client.app.state.tokens  # type: ignore[attr-defined]
        admin = {"Authorization": f"Bearer {tokens.create(['admin'])[1]}"}
        writer = {"Authorization": f"Bearer {tokens.create(['events:write'])[1]}"}
        event = raw_event("domain.nameservers_changed", brand="kustwebb")
        held = client.post("/v1/events", json=event, headers=writer).json()
        assert held["status"] == "held"

        assert client.post("/v1/brands/kustwebb/dns-check", headers=writer).status_code == 403
        missing = client.post("/v1/brands/nope/dns-check", headers=admin)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"

        failed = client.post("/v1/brands/kustwebb/dns-check", headers=admin)
        assert failed.status_code == 200, failed.text
        body = failed.json()
        assert (body["ok"], body["outcome"], body["state"]["state"]) == (
            False,
            "fail",
            "unverified",
        )
        world.publish(kustwebb={})
        passed = client.post("/v1/brands/kustwebb/dns-check", headers=admin).json()
        assert (passed["previous"], passed["state"]["state"], passed["released"]) == (
            "unverified",
            "verified",
            1,
        )
        assert passed["state"]["verified"] is True and passed["state"]["failures"] == 0
        message = client.get(f"/v1/messages/{held['id']}", headers=admin).json()
        assert message["status"] in ("queued", "sending", "sent")
        # the same process composes kustwebb's next message as its own: not held
        event = raw_event("domain.nameservers_changed", brand="kustwebb", domain="toinen.fi")
        after = client.post("/v1/events", json=event, headers=writer).json()
        assert after["status"] == "queued"

        metrics = client.get("/metrics", headers=admin).text
        assert 'notifier_brand_dns_state{brand="kustwebb",state="verified"} 1.0' in metrics
        assert 'notifier_brand_dns_state{brand="kustwebb",state="unverified"} 0.0' in metrics
        assert (
            'notifier_brand_dns_transitions_total{brand="kustwebb",from="unverified",'
            'to="verified"} 1.0' in metrics
        )
    with open_outbox(settings) as outbox:
        assert outbox.get(after["id"]).status == Status.QUEUED
        with outbox.transaction(write=False) as cur:
            rows = cur.execute("SELECT type, brand FROM outbox_events").fetchall()
        assert ("brand.dns_changed", "kustwebb") in [tuple(r) for r in rows]
