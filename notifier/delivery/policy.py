"""Delivery policy: the retry schedule and what an attempt's outcome leads to.

+5, 10, 20, 40 minutes, then every 1–2 hours (RFC 5321 §4.5.4.1 style), each ±10 %;
a 5xx fails at once (suppressing the address on 5.1.x); past its lifetime a message
fails with 4.4.7. Pure functions over the outbox's settings and a claim.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..outbox.model import HOUR, Claim, OutboxConfig, Status
from .transport import AttemptResult


def retry_delay(
    config: OutboxConfig, failures: int, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based).

    +5, 10, 20, 40 minutes, then every 1–2 hours, each ±10 %; a server's "try again
    in N seconds" is honoured by never waiting less than that.
    """
    if failures <= len(config.retry_delays):
        base = config.retry_delays[max(failures, 1) - 1]
    else:
        base = rng.uniform(*config.retry_interval)
    delay = base * rng.uniform(1 - config.retry_jitter, 1 + config.retry_jitter)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, config.retry_interval[1] * 2)
    return delay


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    reason: str | None = None
    next_attempt_at: float | None = None
    suppress: bool = False


def describe(result: AttemptResult) -> str:
    """``"550 5.1.1 no such user (mx.example.fi)"``."""
    text = result.text.strip()
    enhanced = result.enhanced or ""
    if enhanced and text.startswith(enhanced):
        enhanced = ""  # the server's text already starts with it
    parts = [str(result.code) if result.code is not None else "", enhanced, text]
    text = " ".join(p for p in parts if p) or result.outcome
    return f"{text} ({result.host})" if result.host else text


def decide(
    config: OutboxConfig, claim: Claim, result: AttemptResult, now: float, rng: random.Random
) -> Decision:
    """The state an attempt leads to: sent; failed at once on 5xx (suppressing the
    address on 5.1.x); otherwise deferred on the retry schedule, or failed with 4.4.7
    once the message is past its lifetime."""
    if result.outcome == "sent":
        return Decision(Status.SENT)
    reason = describe(result)
    if result.outcome == "permanent":
        return Decision(Status.FAILED, reason, suppress=result.no_such_user)
    failures = claim.attempts + 1
    if now >= claim.deadline:
        age = (now - claim.created_at) / HOUR
        return Decision(
            Status.FAILED,
            f"4.4.7 message expired after {failures} attempts in {age:.1f} h; last: {reason}",
        )
    delay = retry_delay(config, failures, rng, result.retry_after)
    return Decision(Status.DEFERRED, reason, min(now + delay, claim.deadline))


def expired(claim: Claim, now: float) -> Decision:
    age = (now - claim.created_at) / HOUR
    return Decision(
        Status.FAILED, f"4.4.7 message expired after {claim.attempts} attempts in {age:.1f} h"
    )
