"""The ``message.*`` status events come from the state changes themselves, in their
transactions: outcomes recorded under a lease (sent, deferred, failed, suppressed),
cancellations, suppression at acceptance and one-click unsubscribes — on SQLite and
PostgreSQL; an endpoint's deliveries are written with them."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier import events as catalog
from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings
from notifier.delivery.transport import AttemptResult
from notifier.outbox import Delivery, Status
from tests.conftest import Box, open_box
from tests.feedback.webhooks.conftest import Clock, add


@pytest.fixture
def box(db_url: str, tmp_path: Path, pipeline: Pipeline, clock: Clock) -> Iterator[Box]:
    settings = Settings(var_dir=tmp_path / "var", secret_key=Secret("t"), database_url=db_url)
    with open_box(settings, pipeline, clock=clock, rng=random.Random(1)) as b:
        yield b


def _event(name: str, **data: Any) -> dict[str, Any]:
    return {
        "event": name,
        "brand": "acme",
        "recipient": {"email": "aino@example.fi", "language": "fi"},
        "data": {**catalog.CATALOG[name].sample, **data},
    }


def _events(box: Box) -> list[tuple[str, dict[str, Any]]]:
    with box.transaction(write=False) as cur:
        rows = cur.execute("SELECT type, data FROM outbox_events ORDER BY id").fetchall()
    return [(str(t), json.loads(str(d))) for t, d in rows]


@pytest.mark.parametrize(
    ("status", "outcome", "code", "type_"),
    [
        (Status.SENT, "sent", 250, "message.sent"),
        (Status.DEFERRED, "transient", 451, "message.deferred"),
        (Status.FAILED, "permanent", 550, "message.failed"),
        (Status.SUPPRESSED, None, None, "message.suppressed"),
    ],
)
def test_recorded_outcomes_are_emitted(
    box: Box, status: Status, outcome: str | None, code: int | None, type_: str
) -> None:
    accepted = box.accept(_event("domain.renewal_reminder"))
    [claim] = box.claim("w1", 10)
    attempt = (
        AttemptResult(outcome, host="mx.example.fi", code=code, enhanced="5.1.1", text="reply")  # type: ignore[arg-type]
        if outcome
        else None
    )
    lost = box.complete(
        "w1",
        [Delivery(claim.id, status, reason="why", attempt=attempt, next_attempt_at=None)],
    )
    assert lost == []
    [(got_type, data)] = _events(box)
    assert got_type == type_
    assert data["id"] == accepted.id and data["message_id"] == claim.message_id
    assert data["status"] == str(status) and data["recipient"] == "aino@example.fi"
    assert data["brand"] == "acme" and data["event"] == "domain.renewal_reminder"
    assert data["domain"] and data["attempts"] == (1 if attempt else 0)
    assert data["reason"] == "why" and data["created_at"]
    assert (data["smtp"] or {}).get("code") == code


def test_a_lost_lease_emits_nothing(box: Box, clock: Clock) -> None:
    box.accept(_event("domain.renewal_reminder"))
    [claim] = box.claim("w1", 10, lease=60)
    clock.advance(120)
    box.claim("w2", 10)  # the lease expired: w2 owns it now
    assert box.complete("w1", [Delivery(claim.id, Status.SENT)]) == [claim.id]
    assert _events(box) == []


def test_cancellation_emitted(box: Box) -> None:
    reminder = box.accept(_event("domain.renewal_reminder"))
    renewed = box.accept(_event("domain.renewed"))
    [(type_, data)] = _events(box)
    assert type_ == "message.cancelled"
    assert data["id"] == reminder.id and data["status"] == "cancelled"
    assert data["cancelled_by"] == renewed.id


def test_suppressed_at_acceptance_emitted(box: Box) -> None:
    box.suppress("acme", "aino@example.fi", "550 5.1.1")
    accepted = box.accept(_event("privacy.enabled"))  # optional mail
    assert accepted.status == Status.SUPPRESSED
    [(type_, data)] = _events(box)
    assert (type_, data["id"]) == ("message.suppressed", accepted.id)


def test_unsubscribe_emitted_with_the_suppression(box: Box) -> None:
    box.unsubscribe("acme", "Aino@Example.fi", "domain.renewal_reminder", "one-click")
    assert box.is_suppressed("acme", "aino@example.fi")
    [(type_, data)] = _events(box)
    assert type_ == "message.unsubscribed"
    assert data == {
        "brand": "acme",
        "recipient": "aino@example.fi",
        "event": "domain.renewal_reminder",
        "reason": "one-click",
    }


def test_deliveries_are_written_and_rolled_back_with_the_event(box: Box) -> None:
    endpoint, _ = add(box.outbox, "http://127.0.0.1:9/hooks", "message.cancelled")
    box.accept(_event("domain.renewal_reminder"))
    with pytest.raises(RuntimeError), box.transaction() as cur:
        box._emit(cur, [catalog_event("message.cancelled")], box.clock())
        raise RuntimeError("the change failed")
    assert box.endpoint(endpoint.id).pending == 0
    box.accept(_event("domain.renewed"))
    assert box.endpoint(endpoint.id).pending == 1


def catalog_event(type_: str) -> Any:
    from notifier.outbox.events import StatusEvent

    return StatusEvent(type_, "acme", {})
