"""Helpers shared by the delivery tests: envelopes, short timeouts, one-shot relay sends.

Every helper runs its client in ``asyncio.run`` and closes its transport; timeouts are
short (``FAST``) so the fault tests are quick, but nothing asserts on wall time.
"""

from __future__ import annotations

import asyncio
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from notifier.delivery.relay import RelayTransport
from notifier.delivery.smtp import Timeouts
from notifier.delivery.transport import AttemptResult, Envelope

fault = pytest.mark.smtp_fault
FAST = Timeouts(connect=2.0, command=1.0, data=1.0, data_block=2.0, final=2.0, quit=1.0)
SENDER = "bounce+123@bounces.brand.test"


def make_envelope(
    n: int = 0,
    *,
    rcpt: str = "alice@example.test",
    body: str | None = None,
    raw_body: bytes | None = None,
) -> Envelope:
    msg = EmailMessage()
    msg["From"] = "Brand <no-reply@brand.test>"
    msg["To"] = rcpt if rcpt.isascii() and rcpt.isprintable() else "recipient@example.test"
    msg["Subject"] = f"Renewal reminder {n}"
    msg["Message-ID"] = f"<msg-{n}@notifier.test>"
    msg.set_content(body or f"Hello {n}\nYour domain expires soon.\n")
    data = msg.as_bytes(policy=email.policy.SMTP)
    if raw_body is not None:
        head = data.split(b"\r\n\r\n", 1)[0]
        data = head + b"\r\n\r\n" + raw_body
    return Envelope(
        message_id=f"<msg-{n}@notifier.test>", mail_from=SENDER, rcpt_to=rcpt, data=data
    )


def relay(url: str, **kwargs: Any) -> RelayTransport:
    kwargs.setdefault("timeouts", FAST)
    kwargs.setdefault("helo", "client.notifier.test")
    return RelayTransport(url, **kwargs)


def send_one(url: str, envelope: Envelope | None = None, **kwargs: Any) -> AttemptResult:
    async def go() -> AttemptResult:
        transport = relay(url, **kwargs)
        try:
            return await transport.send(envelope or make_envelope())
        finally:
            await transport.close()

    return asyncio.run(go())


def send_many(url: str, envelopes: list[Envelope], **kwargs: Any) -> list[AttemptResult]:
    """Send one after the other on one transport (so connections are reused)."""

    async def go() -> list[AttemptResult]:
        transport = relay(url, **kwargs)
        try:
            return [await transport.send(e) for e in envelopes]
        finally:
            await transport.close()

    return asyncio.run(go())


def assert_result(
    result: AttemptResult,
    outcome: str,
    code: int | None = None,
    enhanced: str | None = None,
    *,
    possible_duplicate: bool = False,
) -> None:
    assert (result.outcome, result.code, result.enhanced, result.possible_duplicate) == (
        outcome,
        code,
        enhanced,
        possible_duplicate,
    ), result
