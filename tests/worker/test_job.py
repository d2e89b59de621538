"""Each step of a job, through a real worker and a real SMTP server (aiosmtpd with
injected faults): sent with evidence, deferred, failed and suppressed, stale, poison."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from notifier.compose.pipeline import Pipeline
from notifier.errors import SigningError
from notifier.feedback.verp import verp_for
from notifier.outbox import Outbox, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from tests.smtpd import Fault, SMTPTestServer
from tests.test_outbox import Clock, FakeDNS, raw_event, reminder
from tests.worker.support import MINUTE, message_id_of, run_worker

# --- delivery outcomes -----------------------------------------------------------------------


def test_sent_through_real_smtp_with_evidence(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer, pipeline: Pipeline
) -> None:
    ids = [
        r.id
        for r in box.accept_batch(
            [
                reminder(30),
                raw_event("reseller.invoice_issued", brand="acme", to="billing@acme.example"),
                reminder(7, brand="kustwebb", lang="sv"),
                raw_event("domain.nameservers_changed", brand="nordname", lang="en"),
            ]
        )
    ]
    stats = run_worker(box, key_dir, smtp_server.url)
    assert stats.sent == 4 and stats.claimed == 4
    received = {message_id_of(m.data): m for m in smtp_server.messages}
    assert len(received) == 4
    dns = FakeDNS(key_dir, pipeline)
    for i in ids:
        record = box.get(i)
        assert record.status == Status.SENT
        [attempt] = record.attempt_log
        assert (attempt.outcome, attempt.code, attempt.enhanced) == ("sent", 250, "2.0.0")
        assert attempt.host == f"127.0.0.1:{smtp_server.port}"
        got = received[record.message_id]
        # the envelope sender is the message's own VERP address on the stored domain
        assert got.mail_from == verp_for(key_dir).envelope_sender(i, record.mail_from)
        assert got.mail_from.startswith(f"b-{i}-")
        assert got.mail_from.endswith("@" + record.mail_from.rpartition("@")[2])
        assert got.rcpt_tos == [record.rcpt_to]
        raw = box.raw(i)
        assert raw.signed and raw.data == got.data  # the exact bytes the server got
        assert dkim.verify(got.data, dnsfunc=dns)
        assert record.dkim_domain == "nordname.com" and record.dkim_selector == "nn2026a"
    assert smtp_server.sessions <= 4  # pooled connections, not one per message


@pytest.mark.parametrize(
    ("at", "reply"),
    [
        ("RCPT", "451 4.3.0 Try again later"),
        ("DOT", "451 4.3.0 Try again later"),
        ("RCPT", "452 4.5.3 Too many recipients"),
        ("CONNECT", "421 4.3.2 Not now"),
    ],
)
def test_transient_reply_defers_then_sends_with_the_same_message_id(
    box: Outbox,
    key_dir: Path,
    clock: Clock,
    smtp_server_factory: Callable[..., SMTPTestServer],
    at: str,
    reply: str,
) -> None:
    server = smtp_server_factory(Fault(at, reply, times=1))
    mid = box.accept(reminder(30)).id
    stats = run_worker(box, key_dir, server.url)
    assert stats.deferred == 1
    record = box.get(mid)
    assert record.status == Status.DEFERRED
    code, enhanced = reply.split()[:2]
    assert (record.reason or "").startswith(f"{code} {enhanced}")
    assert record.next_attempt_at is not None
    assert 4.5 * MINUTE <= record.next_attempt_at.timestamp() - clock.now <= 5.5 * MINUTE
    [attempt] = record.attempt_log
    assert (attempt.code, attempt.enhanced) == (int(code), enhanced)
    assert server.messages == []

    assert run_worker(box, key_dir, server.url).claimed == 0  # not due yet
    clock.advance(6 * MINUTE)
    assert run_worker(box, key_dir, server.url).sent == 1
    record = box.get(mid)
    assert record.status == Status.SENT and record.attempts == 2
    [got] = server.messages
    assert message_id_of(got.data) == record.message_id


def test_550_no_such_user_fails_and_suppresses(
    box: Outbox, key_dir: Path, smtp_server_factory: Callable[..., SMTPTestServer]
) -> None:
    server = smtp_server_factory(Fault("RCPT", "550 5.1.1 No such user here", times=1))
    first = box.accept(raw_event("domain.nameservers_changed", to="gone@example.fi")).id
    assert run_worker(box, key_dir, server.url).failed == 1
    record = box.get(first)
    assert record.status == Status.FAILED and "550 5.1.1" in (record.reason or "")
    assert box.is_suppressed("acme", "gone@example.fi")
    optional = box.accept(raw_event("domain.dnssec_changed", to="gone@example.fi"))
    mandatory = box.accept(reminder(30, to="gone@example.fi"))
    assert optional.status == Status.SUPPRESSED and mandatory.status == Status.QUEUED
    assert run_worker(box, key_dir, server.url).sent == 1
    assert box.get(mandatory.id).status == Status.SENT
    assert [m.rcpt_tos for m in server.messages] == [["gone@example.fi"]]


def test_disconnect_after_the_dot_is_a_possible_duplicate_resent_with_same_id(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server_factory: Callable[..., SMTPTestServer]
) -> None:
    server = smtp_server_factory(Fault("DOT", action="disconnect", times=1))
    mid = box.accept(reminder(30)).id
    run_worker(box, key_dir, server.url)
    record = box.get(mid)
    assert record.status == Status.DEFERRED and record.possible_duplicate
    assert record.attempt_log[0].possible_duplicate
    clock.advance(10 * MINUTE)
    run_worker(box, key_dir, server.url)
    assert box.get(mid).status == Status.SENT
    # the server stored it twice; both copies carry the Message-ID fixed at acceptance
    assert [message_id_of(m.data) for m in server.messages] == [record.message_id] * 2


def test_suppressed_after_acceptance_is_not_sent(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid = box.accept(raw_event("domain.dnssec_changed", to="late@example.fi")).id
    box.suppress("acme", "late@example.fi", "550 5.1.1 earlier bounce")
    assert run_worker(box, key_dir, smtp_server.url).suppressed == 1
    assert box.get(mid).status == Status.SUPPRESSED
    assert smtp_server.messages == []


def test_stale_message_fails_447_without_sending(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    mid = box.accept(reminder(30)).id
    clock.advance(4 * 24 * 3600 + 2 * 3600)  # workers were down past the deadline
    assert run_worker(box, key_dir, smtp_server.url).failed == 1
    record = box.get(mid)
    assert record.status == Status.FAILED and (record.reason or "").startswith("4.4.7")
    assert smtp_server.messages == []


class PoisonSigner(Signer):
    def sign(self, message: bytes, brand: Any, *, check_alignment: bool = True) -> bytes:
        if b"poison@" in message:
            raise SigningError("selector key unreadable")
        return super().sign(message, brand, check_alignment=check_alignment)


def test_poison_message_waits_with_a_reason_and_the_queue_flows(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    ids = [
        r.id
        for r in box.accept_batch(
            [
                reminder(1),
                reminder(2, to="poison@example.fi"),
                reminder(3),
            ]
        )
    ]
    stats = run_worker(box, key_dir, smtp_server.url, signer=PoisonSigner(KeyStore(key_dir)))
    assert (stats.sent, stats.deferred) == (2, 1)
    poison = box.get(ids[1])
    assert poison.status == Status.DEFERRED
    assert "signing failed: selector key unreadable" in (poison.reason or "")
    assert len(smtp_server.messages) == 2
