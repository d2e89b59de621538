"""``notifier inbound`` over real SMTP (aiosmtpd server, smtplib client) on SQLite and
PostgreSQL: a sent message bounces, complaints suppress, forgeries and strangers are
refused, a connection dropped before the final dot stores nothing, and 250 is only
answered once the report is stored."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.delivery.transport import AttemptResult
from notifier.errors import StorageError
from notifier.feedback.verp import verp_for
from notifier.outbox import Delivery, Outbox, Status
from tests.feedback.support import InboundThread, crlf, sample, send_one
from tests.smtpd import SMTPTestServer
from tests.test_outbox import raw_event

EVENT = "domain.renewal_reminder"


def _events(box: Outbox) -> list[tuple[str, int | None, dict[str, Any]]]:
    """The status events that reports caused (the delivery's own message.sent left out)."""
    with box.transaction(write=False) as cur:
        rows = cur.execute(
            "SELECT type, message, data FROM outbox_events WHERE type <> 'message.sent' ORDER BY id"
        ).fetchall()
    return [(str(t), m, json.loads(str(d))) for t, m, d in rows]


def test_hard_bounce_moves_sent_to_bounced_and_suppresses(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    dsn = sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id)
    with InboundThread(box, key_dir) as inbound:
        code, text = inbound.send(dsn, verp)
        assert code == 250 and text.startswith(b"2.0.0 stored as report"), text
        record = box.get(mid)
        assert record.status == Status.BOUNCED
        assert record.reason and "5.1.1" in record.reason
        assert box.is_suppressed("acme", "aino@example.fi")
        [suppression] = box.suppressions("acme")
        assert (suppression.reason, suppression.enhanced, suppression.message) == (
            "bounce",
            "5.1.1",
            mid,
        )
        [report] = box.message_reports(mid)
        assert (report.kind, report.enhanced, report.code, report.outcome) == (
            "hard_bounce",
            "5.1.1",
            550,
            "bounced+suppressed",
        )
        raw = box.report_raw(report.id)
        assert raw == crlf(dsn)  # the exact bytes received, kept as evidence
        assert report.sha256 == hashlib.sha256(raw).hexdigest()
        [(_, message, data)] = [e for e in _events(box) if e[0] == "message.bounced"]
        assert message == mid
        assert data["id"] == mid and data["message_id"] == message_id
        assert (data["brand"], data["event"], data["recipient"]) == (
            "acme",
            EVENT,
            record.recipient,
        )
        assert (data["enhanced"], data["code"], data["report"]) == ("5.1.1", 550, report.id)
        assert "User unknown" in data["diagnostic"]

        # the same DSN again (the remote MTA retried): kept, no second state change
        assert inbound.send(dsn, verp)[0] == 250
    assert len(box.message_reports(mid)) == 2
    assert [e[0] for e in _events(box)].count("message.bounced") == 1
    counters = box.metrics().counters
    assert counters[("acme", EVENT, "bounced")] == 2
    assert counters[("acme", EVENT, "report_hard_bounce")] == 2


def test_soft_bounce_is_recorded_and_counted_only(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    with InboundThread(box, key_dir) as inbound:
        dsn = sample("dsn_delayed_4.2.2.eml", verp=verp, message_id=message_id)
        assert inbound.send(dsn, verp)[0] == 250
    assert box.get(mid).status == Status.SENT
    assert not box.is_suppressed("acme", "aino@example.fi")
    [report] = box.message_reports(mid)
    assert (report.kind, report.enhanced, report.outcome) == ("soft_bounce", "4.2.2", "recorded")
    assert box.metrics().counters[("acme", EVENT, "soft_bounced")] == 1
    assert _events(box) == []


def test_complaint_to_the_feedback_address_suppresses(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    """Feedback loops report to a registered address, not the Return-Path: the ARF
    report is matched by the Message-ID it quotes."""
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    domain = verp.rpartition("@")[2]
    with InboundThread(box, key_dir) as inbound:
        arf = sample("arf_abuse.eml", verp=verp, message_id=message_id)
        assert inbound.send(arf, f"fbl@{domain}")[0] == 250
    record = box.get(mid)
    assert record.status == Status.SENT  # a complaint does not change the state
    [suppression] = box.suppressions("acme")
    assert (suppression.email, suppression.reason) == ("aino@example.fi", "complaint")
    [(kind, message, data)] = _events(box)
    assert (kind, message, data["feedback_type"]) == ("message.complained", mid, "abuse")
    assert box.metrics().counters[("acme", EVENT, "complained")] == 1


@pytest.mark.parametrize("name", ["qmail_bounce.eml", "exim_legacy_bounce.eml"])
def test_non_standard_bounce_is_a_hard_bounce(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer, name: str
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    with InboundThread(box, key_dir) as inbound:
        assert inbound.send(sample(name, verp=verp, message_id=message_id), verp)[0] == 250
    assert box.get(mid).status == Status.BOUNCED
    [report] = box.message_reports(mid)
    assert (report.format, report.enhanced) == ("flufl.bounce", "5.1.1")
    assert box.is_suppressed("acme", "aino@example.fi")


def test_auto_reply_is_stored_and_changes_nothing(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    with InboundThread(box, key_dir) as inbound:
        reply = sample("vacation_autoreply.eml", verp=verp, message_id=message_id)
        assert inbound.send(reply, verp)[0] == 250
    assert box.get(mid).status == Status.SENT
    assert not box.is_suppressed("acme", "aino@example.fi")
    [report] = box.message_reports(mid)
    assert (report.kind, report.outcome) == ("auto_reply", "recorded")


def test_forged_mac_is_refused_counted_and_not_stored(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    local, _, domain = verp.partition("@")
    prefix, _, mac = local.rpartition("-")
    forged = f"{prefix}-{'a' if mac[0] != 'a' else 'b'}{mac[1:]}@{domain}"
    other = f"b-{mid + 1}-{mac}@{domain}"  # a real MAC moved to another message
    dsn = sample("postfix_dsn_550_5.1.1.eml", verp=forged, message_id=message_id)
    with InboundThread(box, key_dir) as inbound:
        for address in (forged, other):
            code, _ = inbound.send(dsn, address)
            assert code == 550
    assert box.get(mid).status == Status.SENT
    assert not box.is_suppressed("acme", "aino@example.fi")
    assert box.reports() == []
    assert box.metrics().counters[("", "", "report_forged")] == 2
    assert mac not in caplog.text  # the forged address is not logged


def test_unknown_domain_is_refused(box: Outbox, key_dir: Path) -> None:
    with InboundThread(box, key_dir) as inbound:
        code, text = inbound.send(b"Subject: hi\r\n\r\nhello\r\n", "postmaster@example.com")
    assert code == 550 and b"not a bounce domain" in text
    assert box.reports() == []


def test_unmatched_and_unparsable_reports_are_kept_for_ops(box: Outbox, key_dir: Path) -> None:
    garbage = sample("garbage.eml")
    with InboundThread(box, key_dir) as inbound:
        assert inbound.send(garbage, "bounces@bounce.acme.fi")[0] == 250
        dsn = sample("postfix_dsn_550_5.1.1.eml")  # for a message we never sent
        assert inbound.send(dsn, "bounces@bounce.acme.fi")[0] == 250
    unmatched = box.reports(unmatched=True)
    assert [(r.kind, r.matched, r.outcome) for r in unmatched] == [
        ("hard_bounce", False, "unmatched"),
        ("unparsable", False, "unmatched"),
    ]
    assert box.report_raw(unmatched[1].id) == crlf(garbage)
    assert box.metrics().counters[("", "", "report_unmatched")] == 2


def _smtp_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_connection_dropped_before_the_final_dot_stores_nothing(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    dsn = crlf(sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id))
    with InboundThread(box, key_dir) as inbound:
        with socket.create_connection(("127.0.0.1", inbound.port), timeout=10) as sock:
            assert _smtp_line(sock).startswith(b"220")
            for command, expected in (
                (b"HELO mx.example.fi", b"250"),
                (b"MAIL FROM:<>", b"250"),
                (f"RCPT TO:<{verp}>".encode(), b"250"),
                (b"DATA", b"354"),
            ):
                sock.sendall(command + b"\r\n")
                assert _smtp_line(sock).startswith(expected)
            sock.sendall(dsn[: len(dsn) // 2])  # half the report, then the line goes dead
        # the server has handled that connection once a later one is answered
        assert inbound.send(sample("vacation_autoreply.eml"), "bounces@bounce.acme.fi")[0] == 250
    assert box.message_reports(mid) == []
    assert box.get(mid).status == Status.SENT
    assert [r.kind for r in box.reports()] == ["auto_reply"]


def test_size_limit(box: Outbox, key_dir: Path) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 200  # 15.6 kB
    with InboundThread(box, key_dir, max_size=4096) as inbound:
        code, _ = inbound.send(big, "bounces@bounce.acme.fi")
    assert code == 552
    assert box.reports() == []


def test_storage_failure_answers_451_and_a_retry_stores(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid, message_id, verp = send_one(box, key_dir, smtp_server)
    dsn = sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=message_id)
    with InboundThread(box, key_dir) as inbound:
        outbox = inbound.receiver.outbox

        def full(*_: object) -> None:
            raise StorageError("the outbox database is full (disk or size limit)")

        monkeypatch.setattr(outbox, "store_reports", full)
        code, _ = inbound.send(dsn, verp)
        assert code == 451  # the reporting MTA keeps it and retries
        assert box.get(mid).status == Status.SENT
        monkeypatch.undo()
        assert inbound.send(dsn, verp)[0] == 250
    assert box.get(mid).status == Status.BOUNCED


def test_bounce_before_the_250_is_recorded_is_applied_once_sent(box: Outbox, key_dir: Path) -> None:
    """A local relay can bounce within milliseconds, before the worker's recorder has
    written ``sent``: the report waits (pending) and is applied once the message is
    final — ``bounced`` only ever from ``sent``."""
    accepted = box.accept(raw_event(to="aino@example.fi"))  # type: ignore[attr-defined]
    [claim] = box.claim("w1", 1)
    record = box.get(accepted.id)
    verp = verp_for(key_dir).envelope_sender(accepted.id, record.mail_from)
    dsn = sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=record.message_id)
    with InboundThread(box, key_dir) as inbound:
        assert inbound.send(dsn, verp)[0] == 250
        [report] = box.message_reports(accepted.id)
        assert report.outcome == "pending+suppressed"
        assert box.get(accepted.id).status == Status.SENDING
        assert box.apply_pending() == 0  # still the worker's
        ok = AttemptResult("sent", host="mx", code=250, enhanced="2.0.0", text="ok")
        box.complete(
            "w1", [Delivery(claim.id, Status.SENT, attempt=ok, rcpt_to=claim.rcpt_to, brand="acme")]
        )
        deadline = time.monotonic() + 30  # the server applies pending reports every second
        while box.get(accepted.id).status != Status.BOUNCED and time.monotonic() < deadline:
            time.sleep(0.05)
    assert box.get(accepted.id).status == Status.BOUNCED
    [report] = box.message_reports(accepted.id)
    assert report.outcome == "bounced+suppressed"
    [(_, message, data)] = [e for e in _events(box) if e[0] == "message.bounced"]
    assert message == accepted.id and data["report"] == report.id


def test_pending_bounce_for_a_message_that_failed_changes_nothing(
    box: Outbox, key_dir: Path
) -> None:
    accepted = box.accept(raw_event(to="aino@example.fi"))  # type: ignore[attr-defined]
    [claim] = box.claim("w1", 1)
    record = box.get(accepted.id)
    verp = verp_for(key_dir).envelope_sender(accepted.id, record.mail_from)
    dsn = sample("postfix_dsn_550_5.1.1.eml", verp=verp, message_id=record.message_id)
    with InboundThread(box, key_dir) as inbound:
        assert inbound.send(dsn, verp)[0] == 250
    bad = AttemptResult("permanent", host="mx", code=550, enhanced="5.1.1", text="no such user")
    box.complete(
        "w1",
        [
            Delivery(
                claim.id,
                Status.FAILED,
                reason="550",
                attempt=bad,
                rcpt_to=claim.rcpt_to,
                brand="acme",
            )
        ],
    )
    assert box.apply_pending() == 1
    assert box.get(accepted.id).status == Status.FAILED
    [report] = box.message_reports(accepted.id)
    assert report.outcome == "recorded+suppressed"
    assert all(e[0] != "message.bounced" for e in _events(box))
