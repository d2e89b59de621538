"""Golden .eml files: the exact bytes for a few cases, time and Message-ID frozen.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/compose/test_golden.py``
and review the diff like any other code change.

The brands' own cases are rendered with their DNS verified (mail from the reseller's
domain); the ``via-platform`` case is the same mail before it is (the platform's domain
on the reseller's behalf, Reply-To the reseller).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.compose.pipeline import Pipeline

GOLDEN = Path(__file__).parent / "golden"
WHEN = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
CASES = [
    ("acme", "domain.renewal_reminder", "fi"),
    ("kustwebb", "domain.renewal_reminder", "sv"),  # the brand's own override
    ("acme", "domain.renewed", "en"),  # optional: List-Unsubscribe
    ("acme", "reseller.invoice_overdue", "fi"),  # platform brand
    ("kustwebb", "transfer.auth_code", "sv"),
]


def _check(pipeline: Pipeline, brand: str, event: str, lang: str, name: str) -> None:
    composed = pipeline.compose(
        pipeline.sample(event, brand, lang), date=WHEN, message_id=f"<golden-{event}@{brand}.test>"
    )
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(composed.outgoing.data)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert composed.outgoing.data == path.read_bytes()


@pytest.mark.parametrize(("brand", "event", "lang"), CASES)
def test_golden(verified_pipeline: Pipeline, brand: str, event: str, lang: str) -> None:
    _check(verified_pipeline, brand, event, lang, f"{brand}.{event}.{lang}.eml")


def test_golden_via_platform(pipeline: Pipeline) -> None:
    # acme's DNS is not verified (policy "platform"): From the platform's domain under
    # the reseller's name, Reply-To the reseller, bounces to the platform
    _check(
        pipeline,
        "acme",
        "domain.renewal_reminder",
        "fi",
        "acme.domain.renewal_reminder.fi.via-platform.eml",
    )
