"""Reply classification: codes, enhanced status codes and "try again in N minutes"."""

from __future__ import annotations

import pytest

from notifier.delivery.replies import classify_reply, parse_enhanced, parse_retry_after

# ----------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("code", "text", "stage", "outcome", "enhanced"),
    [
        (250, "2.0.0 Ok: queued as ABC", "dot", "sent", "2.0.0"),
        (451, "4.3.0 Try again", "rcpt", "transient", "4.3.0"),
        (550, "5.1.1 User unknown", "rcpt", "permanent", "5.1.1"),
        (550, "4.1.1 mismatched class", "rcpt", "permanent", None),
        (552, "5.3.4 Message too big", "dot", "permanent", "5.3.4"),
        (552, "5.3.4 Message too big", "rcpt", "permanent", "5.3.4"),
        (552, "Too many recipients", "dot", "transient", None),
        (999, "weird", "dot", "transient", None),  # code dropped: not SMTP
        (554, "no enhanced code here 5.7.1", "dot", "permanent", None),
    ],
)
def test_classify_reply(
    code: int, text: str, stage: str, outcome: str, enhanced: str | None
) -> None:
    result = classify_reply(code, text, stage=stage)
    expected_code = code if 200 <= code <= 599 else None
    assert (result.outcome, result.code, result.enhanced) == (outcome, expected_code, enhanced)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4.7.1 Greylisted, try again in 5 minutes", 300),
        ("Please retry in 30 seconds", 30),
        ("try again after 2 hours", 7200),
        ("Try again in 90s", 90),
        ("come back in 10 min", 600),
        ("try again in 99999 hours", 86400),
        ("try again later", None),
        ("Mailbox busy", None),
    ],
)
def test_parse_retry_after(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text) == seconds


def test_parse_enhanced() -> None:
    assert parse_enhanced(550, "5.1.1 <a@b>: unknown") == "5.1.1"
    assert parse_enhanced(421, "4.4.2 idle") == "4.4.2"
    assert parse_enhanced(550, "Requested action not taken") is None
    assert parse_enhanced(250, "2.0.0.1 not a code") is None
