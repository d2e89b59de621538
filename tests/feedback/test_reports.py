"""Reading reports: RFC 3464 DSNs, non-standard bounces (flufl.bounce), RFC 5965 ARF
complaints, RFC 3834 auto-replies, and junk — against samples written after real
MTAs' output (Postfix, Sendmail, Exim, qmail, a feedback loop, a vacation reply)."""

from __future__ import annotations

import pytest

from notifier.feedback.reports import parse
from tests.feedback.support import sample

MID = "<0123456789abcdef@acme.fi>"


@pytest.mark.parametrize(
    ("name", "kind", "format_", "status", "code", "suppresses"),
    [
        ("postfix_dsn_550_5.1.1.eml", "hard_bounce", "rfc3464", "5.1.1", 550, True),
        ("dsn_delayed_4.2.2.eml", "soft_bounce", "rfc3464", "4.2.2", 452, False),
        # Exim's DSN says 5.0.0; the diagnostic's 5.1.1 is the one that matters
        ("exim_bounce.eml", "hard_bounce", "rfc3464", "5.1.1", 550, True),
        ("exim_legacy_bounce.eml", "hard_bounce", "flufl.bounce", "5.1.1", 550, True),
        ("qmail_bounce.eml", "hard_bounce", "flufl.bounce", "5.1.1", None, True),
        ("arf_abuse.eml", "complaint", "rfc5965", None, None, True),
        ("vacation_autoreply.eml", "auto_reply", "rfc3834", None, None, False),
    ],
)
def test_samples(
    name: str, kind: str, format_: str, status: str | None, code: int | None, suppresses: bool
) -> None:
    report = parse(sample(name, message_id=MID))
    assert (report.kind, report.format, report.status, report.code) == (
        kind,
        format_,
        status,
        code,
    )
    assert report.suppresses is suppresses
    assert report.recipient == "aino@example.fi"
    assert report.original_message_id == MID


def test_dsn_fields() -> None:
    report = parse(sample("postfix_dsn_550_5.1.1.eml"))
    assert report.action == "failed"
    assert report.diagnostic is not None
    assert report.diagnostic.startswith("550 5.1.1 <aino@example.fi>: Recipient address rejected")


def test_complaint_fields() -> None:
    report = parse(sample("arf_abuse.eml"))
    assert report.feedback_type == "abuse"


def test_failed_with_a_4xx_status_is_soft() -> None:
    """Postfix gives up after its queue lifetime with 4.4.7: the address may exist."""
    raw = sample("postfix_dsn_550_5.1.1.eml").replace(b"Status: 5.1.1", b"Status: 4.4.7")
    raw = raw.replace(b"smtp; 550 5.1.1", b"smtp; 451 4.4.7")
    report = parse(raw)
    assert (report.kind, report.status, report.suppresses) == ("soft_bounce", "4.4.7", False)


def test_hard_bounce_other_than_5_1_does_not_suppress() -> None:
    raw = sample("postfix_dsn_550_5.1.1.eml").replace(b"5.1.1", b"5.7.1")
    report = parse(raw)
    assert (report.kind, report.status, report.suppresses) == ("hard_bounce", "5.7.1", False)


def test_positive_dsn_is_other() -> None:
    raw = sample("postfix_dsn_550_5.1.1.eml").replace(b"Action: failed", b"Action: delivered")
    raw = raw.replace(b"Status: 5.1.1", b"Status: 2.0.0")
    assert parse(raw).kind == "other"


@pytest.mark.parametrize(
    "raw",
    [
        sample("garbage.eml"),
        b"",
        b"\xff\xfe\x00" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x",
        b"Content-Type: message/delivery-status\r\n\r\n\r\n\r\n",
        b"From:\r\nSubject: out of office\r\n\r\nI am away",
    ],
)
def test_junk_never_raises(raw: bytes) -> None:
    report = parse(raw)
    assert report.kind in ("unparsable", "other", "hard_bounce", "soft_bounce")
    assert not report.suppresses or report.kind == "hard_bounce"


def test_plain_mail_is_unparsable() -> None:
    report = parse(b"From: someone@example.fi\r\nSubject: hello\r\n\r\nJust a question.\r\n")
    assert report.kind == "unparsable"
