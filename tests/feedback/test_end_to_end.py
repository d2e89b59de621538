"""The loop closed with real servers: an event accepted over the API → delivered by the
worker to an SMTP server on loopback → a DSN for it delivered over SMTP to
``notifier inbound`` (its VERP address) → the message ``bounced``, the address
suppressed for the brand's optional mail → a ``message.bounced`` webhook received by a
real HTTP server on loopback and verified with the independent ``standardwebhooks``
package → the reseller's "Sent mail" page shows the bounce."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from notifier import events as catalog
from notifier.config import Secret, Settings
from notifier.delivery.relay import RelayTransport
from notifier.feedback.dispatcher import dispatcher_from_settings
from notifier.outbox import Outbox, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig, WorkerStats
from tests.api.conftest import Tokens
from tests.api.test_api import accept, event, outbox
from tests.feedback.support import InboundThread, sample
from tests.feedback.webhooks.receiver import Receiver
from tests.smtpd import SMTPTestServer
from tests.worker.support import BRANDS, FAST

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the webhook receiver listens on loopback, which production refuses
    return Settings(
        var_dir=tmp_path / "var", secret_key=Secret("test-secret"), webhook_allow_private=True
    )


async def _deliver(box: Outbox, key_dir: Path, url: str) -> WorkerStats:
    """The worker, as ``notifier worker --until-idle`` runs it, relaying to ``url``."""
    transport = RelayTransport(url, timeouts=FAST, helo="worker.notifier.test")
    worker = Worker(
        box,
        transport,
        Signer(KeyStore(key_dir)),
        config=WorkerConfig(poll_interval=0.01, flush_interval=0.01),
        brands=BRANDS,
    )
    try:
        return await worker.run(until_idle=True)
    finally:
        await transport.close()


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def test_dsn_bounces_suppresses_and_reaches_the_registry_backend(
    client: TestClient,
    tokens: Tokens,
    settings: Settings,
    key_dir: Path,
    smtp_server: SMTPTestServer,
) -> None:
    box = outbox(client)
    hooks = Receiver()
    try:
        # the registry backend registers for bounces over the API (admin scope)
        created = client.post(
            "/v1/webhooks",
            json={"url": hooks.url, "events": ["message.bounced", "message.sent"]},
            headers=tokens.h("admin"),
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]

        mid = accept(client, tokens, event(email="aino@example.fi"), who="writer")
        assert asyncio.run(_deliver(box, key_dir, smtp_server.url)).sent == 1
        [delivered] = smtp_server.messages
        verp = delivered.mail_from
        # acme's DNS is not verified here: the platform's bounce domain, as decided
        domain = box.get(mid).mail_from.rpartition("@")[2]
        assert verp.startswith(f"b-{mid}-") and verp.endswith(f"@{domain}")
        message_id = box.get(mid).message_id

        # the recipient's server bounces it a while later, to the envelope sender
        with InboundThread(box, key_dir) as inbound:
            dsn = sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id)
            assert inbound.send(dsn, verp)[0] == 250

        doc = client.get(f"/v1/messages/{mid}", headers=tokens.h("acme")).json()
        assert doc["status"] == "bounced"
        assert [(r["kind"], r["enhanced"]) for r in doc["reports"]] == [("hard_bounce", "5.1.1")]
        assert box.is_suppressed("acme", "aino@example.fi")

        # the workers deliver it (the app's own secret opens the stored endpoint secret)
        asyncio.run(dispatcher_from_settings(settings, box).run(until_idle=True))
        verified = [Webhook(secret).verify(got.body, got.headers) for got in hooks.received]
        types = [p["type"] for p in verified]
        assert sorted(types) == ["message.bounced", "message.sent"]
        [bounced] = [p for p in verified if p["type"] == "message.bounced"]
        assert bounced["data"]["id"] == mid and bounced["data"]["recipient"] == "aino@example.fi"
        assert bounced["data"]["enhanced"] == "5.1.1"

        # the reseller sees it on its "Sent mail" page
        form = client.get("/preview", headers={"Accept-Language": "en"})
        signed_in = client.post(
            "/preview/login",
            data={"token": tokens.acme, "csrf": _csrf(form.text)},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        page = client.get(f"/preview/brands/acme/sent/{mid}").text
        assert 'class="fb-bounce"' in page and "5.1.1" in page
        listing = client.get("/preview/brands/acme/sent").text
        assert Status.BOUNCED.value in listing
        # events by their title in the page's language, not by their id
        assert catalog.title("domain.renewal_reminder", "en") in listing
        assert "<td>domain.renewal_reminder</td>" not in listing
    finally:
        hooks.close()
