"""What the API shows of a bounce: ``status: bounced`` and the report (kind, codes,
when, SHA-256) in ``GET /v1/messages/{id}``; the inbound counters in ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from notifier.config import Settings
from notifier.feedback.inbound import Incoming, Receiver
from notifier.feedback.verp import verp_for
from notifier.outbox import Status
from tests.api.conftest import Tokens
from tests.api.test_api import accept, event, finish, outbox
from tests.feedback.support import crlf, sample
from tests.worker.support import BRANDS

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def test_message_shows_bounced_with_its_report_and_metrics_count_it(
    client: TestClient, tokens: Tokens, settings: Settings
) -> None:
    mid = accept(client, tokens, event(email="aino@example.fi"))
    finish(client, Status.SENT)
    box = outbox(client)
    record = box.get(mid)
    verp = verp_for(settings.keys_path).envelope_sender(mid, record.mail_from)
    receiver = Receiver(
        box, verp_for(settings.keys_path), [b.envelope_domain for b in BRANDS.all()]
    )
    dsn = crlf(sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=record.message_id))
    [[stored]] = receiver.store([Incoming(dsn, "", (verp,))])
    receiver.store([Incoming(b"junk", "", ("bounces@bounce.acme.fi",))])

    for who in ("admin", "acme"):
        r = client.get(f"/v1/messages/{mid}", headers=tokens.h(who))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "bounced"
        [report] = doc["reports"]
        assert report["kind"] == "hard_bounce"
        assert (report["enhanced"], report["code"]) == ("5.1.1", 550)
        assert report["sha256"] == stored.sha256 and report["received_at"]
        assert report["outcome"] == "bounced+suppressed"

    listed = client.get("/v1/messages?status=bounced", headers=tokens.h("admin")).json()
    assert [m["id"] for m in listed["items"]] == [mid]

    text = client.get("/metrics", headers=tokens.h("admin")).text
    assert 'notifier_messages_bounced_total{brand="acme",event="domain.renewal_reminder"} 1' in text
    assert 'notifier_inbound_reports_total{kind="hard_bounce"} 1' in text
    assert 'notifier_inbound_reports_total{kind="unparsable"} 1' in text
    assert "notifier_inbound_unmatched_total 1" in text
    assert "notifier_inbound_forged_total 0" in text
