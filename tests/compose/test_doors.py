"""One compose sequence: every door shows and sends the same sender.

For every brand × unverified-DNS policy × a mandatory and an optional event, the From,
Reply-To, envelope sender and DKIM ``d=`` are the same in ``notifier render``, the
preview page, ``notifier send-test``, and a message accepted over the API and delivered
by the worker to a real SMTP server (aiosmtpd on loopback).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html as html_lib
import json
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from notifier.api import create_app
from notifier.brands import BrandRegistry
from notifier.cli import app as cli
from notifier.config import Secret, Settings
from notifier.delivery import RelayTransport
from notifier.feedback.verp import verp_for
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig
from tests.smtpd import SMTPTestServer

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; httpx still works (as tests/api/conftest.py)
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

BRANDS = Path(__file__).resolve().parents[2] / "brands"
#: (brand, policy): "own" = DNS verified; "platform" / "hold" = unverified with that policy
SCENARIOS = [
    ("acme", "own"),
    ("acme", "platform"),
    ("acme", "hold"),
    ("kustwebb", "own"),
    ("kustwebb", "platform"),
    ("kustwebb", "hold"),
]
EVENTS = [
    "domain.renewal_reminder",  # mandatory
    "domain.renewed",  # optional
    "reseller.balance_low",  # the reseller's own account mail, in the platform's brand
]
TO = "aino.virtanen@example.fi"


def _brands_dir(root: Path, brand: str, policy: str) -> Path:
    """The shipped brands, with ``brand`` set to the scenario's DNS state and policy."""
    target = root / "brands"
    shutil.copytree(BRANDS, target)
    path = target / f"{brand}.toml"
    text = path.read_text("utf-8")
    text = re.sub(r"(?m)^(dns_verified|unverified_policy)\s*=.*\n", "", text)
    first_table = re.search(r"(?m)^\[", text)
    lines = f"dns_verified = {'true' if policy == 'own' else 'false'}\n"
    lines += f'unverified_policy = "{"hold" if policy == "hold" else "platform"}"\n'
    cut = first_table.start() if first_table else len(text)
    path.write_text(text[:cut] + lines + text[cut:], "utf-8")
    return target


def _identity(data: bytes, envelope: str) -> dict[str, Any]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    sig = " ".join(str(v) for v in msg.get_all("DKIM-Signature") or [])
    d = re.search(r"\bd=([^;\s]+)", sig)
    return {
        "from": str(msg["From"]),
        "reply_to": str(msg["Reply-To"]) if msg["Reply-To"] else None,
        "envelope": envelope,
        "d": d.group(1) if d else None,
    }


@pytest.fixture(scope="module")
def relay() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as server:
        yield server


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize(("brand", "policy"), SCENARIOS)
def test_every_door_has_the_same_sender(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    relay: SMTPTestServer,
    brand: str,
    policy: str,
    event: str,
) -> None:
    brands_dir = _brands_dir(tmp_path, brand, policy)
    var, keys = tmp_path / "var", tmp_path / "keys"
    registry = BrandRegistry(brands_dir, "nordname")
    store = KeyStore(keys)
    for b in registry.all():
        for sel in b.dkim:
            store.generate(b, sel.name, sel.algorithm)
    for name, value in {
        "NOTIFIER_VAR_DIR": str(var),
        "NOTIFIER_KEY_DIR": str(keys),
        "NOTIFIER_BRANDS_DIR": str(brands_dir),
        "NOTIFIER_SECRET_KEY": "doors",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    seen: dict[str, dict[str, Any]] = {}

    # 1. notifier render: the message on stdout, envelope and d= on stderr
    r = runner.invoke(
        cli, ["render", "--brand", brand, "--event", event, "--lang", "fi", "--to", TO]
    )
    assert r.exit_code == 0, r.output
    note = re.search(r"envelope: (\S+) -> \S+; DKIM d=(\S+)", r.stderr)
    assert note, r.stderr
    rendered = _identity(r.stdout_bytes, note.group(1))
    rendered["d"] = note.group(2)
    seen["render"] = rendered

    # 2. the preview page (the same compose call the page makes, then the page itself)
    settings = Settings(
        var_dir=var,
        key_dir=keys,
        brands_dir=brands_dir,
        secret_key=Secret("doors"),
        smtp_url=relay.url,
    )
    api = create_app(settings)
    with TestClient(api) as client:
        admin = api.state.tokens.create(["admin"])[1]
        form = client.get("/preview").text  # the sign-in form's CSRF value
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        login = {"token": admin, "csrf": csrf.group(1)}
        assert client.post("/preview/login", data=login).status_code in (200, 303)
        page = client.get(f"/preview/brands/{brand}", params={"event": event, "lang": "fi"})
        assert page.status_code == 200, page.text
        html = page.text

        def cell(cell_id: str) -> str | None:
            m = re.search(rf'id="{cell_id}">([^<]*)<', html)
            return None if m is None else m.group(1)

        seen["preview"] = {
            "from": html_lib.unescape(cell("h-from") or ""),
            "reply_to": html_lib.unescape(cell("h-reply-to") or "") or None,
            "envelope": html_lib.unescape(cell("h-envelope") or ""),
            "d": cell("h-dkim"),
        }

        # 3. the API, delivered by the worker to the relay
        before = len(relay.messages)
        resp = client.post(
            "/v1/events",
            content=json.dumps(
                {
                    "event": event,
                    "brand": brand,
                    "recipient": {"email": TO, "language": "fi"},
                    "data": _sample(event),
                },
                default=str,
            ),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["status"] in ("queued", "held")
        if body["status"] == "held":  # kept until DNS is verified: release it to send it
            assert policy == "hold" and event == "domain.renewed"
            assert (
                client.post(
                    f"/v1/messages/{body['id']}/retry", headers={"Authorization": f"Bearer {admin}"}
                ).status_code
                == 200
            )
        box = api.state.store.outbox

        async def deliver() -> None:
            transport = RelayTransport(relay.url)
            worker = Worker(
                box,
                transport,
                Signer(KeyStore(keys)),
                config=WorkerConfig(poll_interval=0.01, flush_interval=0.01),
                brands=registry,
            )
            try:
                await worker.run(until_idle=True)
            finally:
                await transport.close()

        asyncio.run(deliver())
        got = relay.messages[before:]
        assert len(got) == 1
        # the worker sends with the message's own VERP address on the decided bounce
        # domain (notifier inbound maps a bounce back to it); its base is the sender
        assert verp_for(keys).check(got[0].mail_from).message == body["id"]
        base = box.get(body["id"]).mail_from
        assert got[0].mail_from.endswith("@" + base.rpartition("@")[2])
        seen["api"] = _identity(got[0].data, base)

    # 4. notifier send-test to the same relay
    before = len(relay.messages)
    r = runner.invoke(
        cli,
        [
            "send-test",
            "--brand",
            brand,
            "--event",
            event,
            "--to",
            TO,
            "--lang",
            "fi",
            "--smtp",
            relay.url,
        ],
    )
    assert r.exit_code == 0, r.output
    got = relay.messages[before:]
    assert len(got) == 1
    seen["send-test"] = _identity(got[0].data, got[0].mail_from)

    # the same sender through every door, and the one the policy says
    assert seen["render"] == seen["preview"] == seen["api"] == seen["send-test"], seen
    own = policy == "own" or (policy == "hold" and event == "domain.renewed")
    expected_d = {"acme": "acme.fi", "kustwebb": "kustwebb.fi"}[brand] if own else "nordname.com"
    if event.startswith("reseller."):  # sent in the platform's own brand, whatever the policy
        expected_d = "nordname.com"
    assert seen["api"]["d"] == expected_d
    assert seen["api"]["reply_to"] is not None  # replies reach the reseller either way


def _sample(event: str) -> dict[str, Any]:
    from notifier import events as catalog

    return dict(catalog.CATALOG[event].sample)
