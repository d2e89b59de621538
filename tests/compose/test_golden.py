"""Golden .eml files: the exact bytes for a few cases, time and Message-ID frozen.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/compose/test_golden.py``
and review the diff like any other code change.
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


@pytest.mark.parametrize(("brand", "event", "lang"), CASES)
def test_golden(pipeline: Pipeline, brand: str, event: str, lang: str) -> None:
    composed = pipeline.compose(
        pipeline.sample(event, brand, lang), date=WHEN, message_id=f"<golden-{event}@{brand}.test>"
    )
    path = GOLDEN / f"{brand}.{event}.{lang}.eml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(composed.outgoing.data)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert composed.outgoing.data == path.read_bytes()
