"""Webhooks delivered to a real HTTP server on loopback, signed per Standard Webhooks 1.0
and verified with the independent ``standardwebhooks`` package; every fault the
receiver can cause leads to a retry with the same ``webhook-id``, never a loss."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from notifier.outbox import Outbox
from notifier.outbox.webhook_model import MAX_AGE
from tests.feedback.webhooks.conftest import Clock, add, dispatch, emit
from tests.feedback.webhooks.receiver import Receiver, closed_port


def _attempts(box: Outbox) -> list[tuple[object, ...]]:
    with box.transaction(write=False) as cur:
        return cur.execute(
            "SELECT d.event, a.code, a.error FROM webhook_attempts a "
            "JOIN webhook_deliveries d ON d.id = a.delivery ORDER BY a.id"
        ).fetchall()


def test_delivered_signed_and_verified_independently(hook_box: Outbox, receiver: Receiver) -> None:
    endpoint, secret = add(hook_box, receiver.url, "message.sent,message.failed")
    emit(hook_box, "message.sent", recipient="aino@example.fi")
    emit(hook_box, "message.deferred")  # not subscribed
    stats = dispatch(hook_box)
    assert stats.delivered == 1
    [got] = receiver.received
    payload = Webhook(str(secret)).verify(got.body, got.headers)
    assert payload["type"] == "message.sent"
    assert payload["data"]["recipient"] == "aino@example.fi"
    assert payload["timestamp"].startswith("2027-01-15")
    assert got.headers["webhook-id"].startswith("evt_")
    assert got.headers["content-type"] == "application/json"
    listed = hook_box.endpoint(endpoint.id)
    assert listed.last_success_at is not None and listed.pending == 0


def test_brand_filter(hook_box: Outbox, receiver: Receiver) -> None:
    add(hook_box, receiver.url, "*", brand="kustwebb")
    emit(hook_box, brand="acme")
    emit(hook_box, brand="kustwebb")
    dispatch(hook_box)
    assert [json.loads(r.body)["data"]["brand"] for r in receiver.received] == ["kustwebb"]


@pytest.mark.parametrize("fault", [500, 503, "stall", "hang-up-mid-body", "redirect"])
def test_a_fault_is_retried_with_the_same_id_then_delivered(
    hook_box: Outbox, receiver: Receiver, clock: Clock, fault: int | str
) -> None:
    _, secret = add(hook_box, receiver.url)
    receiver.script = [fault]
    receiver.stall = 3.0
    emit(hook_box)
    first = dispatch(hook_box, timeout=1.0)
    assert first.retried == 1 and first.delivered == 0
    [(_, code, error)] = _attempts(hook_box)
    assert error  # what went wrong is recorded with the attempt
    if fault == "redirect":
        assert code == 302 and "not followed" in str(error)
    clock.advance(10)  # past the first retry wait (5 s ± 10 %)
    second = dispatch(hook_box, timeout=1.0)
    assert second.delivered == 1
    final = receiver.received[-1]
    Webhook(str(secret)).verify(final.body, final.headers)
    # whatever arrived of the failed attempt carried the same id
    assert set(receiver.ids()) == {final.headers["webhook-id"]}


def test_connection_refused_is_retried(hook_box: Outbox, clock: Clock) -> None:
    endpoint, _ = add(hook_box, f"http://127.0.0.1:{closed_port()}/hooks")
    emit(hook_box)
    assert dispatch(hook_box).retried == 1
    [(_, code, error)] = _attempts(hook_box)
    assert code is None and "connect" in str(error)
    found = hook_box.endpoint(endpoint.id)
    assert found.failing_since == clock.now and found.state == "enabled" and found.pending == 1


def test_410_disables_the_endpoint(hook_box: Outbox, receiver: Receiver) -> None:
    endpoint, _ = add(hook_box, receiver.url)
    receiver.default = 410
    emit(hook_box)
    emit(hook_box)
    dispatch(hook_box)
    found = hook_box.endpoint(endpoint.id)
    assert found.state == "disabled" and "410" in str(found.disabled_reason)
    emit(hook_box)  # a disabled endpoint gets no new deliveries
    assert hook_box.endpoint(endpoint.id).pending == 0


def test_failing_for_three_days_disables(hook_box: Outbox, clock: Clock) -> None:
    endpoint, _ = add(hook_box, f"http://127.0.0.1:{closed_port()}/hooks")
    emit(hook_box)
    elapsed = 0.0
    while hook_box.endpoint(endpoint.id).state == "enabled":
        dispatch(hook_box, timeout=0.5)
        clock.advance(9 * 3600)
        elapsed += 9 * 3600
        assert elapsed < MAX_AGE + 2 * 86400, "never disabled"
    found = hook_box.endpoint(endpoint.id)
    assert found.disabled_reason is not None and found.disabled_reason.startswith("failing for 3")
    assert elapsed >= MAX_AGE - 9 * 3600
    with hook_box.transaction(write=False) as cur:
        (status,) = cur.execute("SELECT status FROM webhook_deliveries").fetchone() or ("",)
    assert status == "failed"  # given up after 3 days


def test_private_address_refused_without_the_setting(hook_box: Outbox, receiver: Receiver) -> None:
    add(hook_box, receiver.url)  # registered while allowed
    emit(hook_box)
    assert dispatch(hook_box, allow_private=False).retried == 1
    assert receiver.received == []
    [(_, _, error)] = _attempts(hook_box)
    assert "127.0.0.1 is a loopback address" in str(error)
    assert "NOTIFIER_WEBHOOK_ALLOW_PRIVATE" in str(error)


def test_rotation_sends_two_signatures_both_verify(
    hook_box: Outbox, receiver: Receiver, clock: Clock
) -> None:
    from notifier.feedback import endpoints

    endpoint, old = add(hook_box, receiver.url)
    _, new = endpoints.rotate(hook_box, b"test-secret", endpoint.id, grace=24 * 3600)
    emit(hook_box)
    dispatch(hook_box)
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(str(old)).verify(got.body, got.headers)
    Webhook(str(new)).verify(got.body, got.headers)
    clock.advance(24 * 3600 + 1)  # the grace is over: the new secret alone
    emit(hook_box)
    dispatch(hook_box)
    last = receiver.received[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    Webhook(str(new)).verify(last.body, last.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(str(old)).verify(last.body, last.headers)


def test_replay_resends_a_time_range_with_the_same_ids(
    hook_box: Outbox, receiver: Receiver, clock: Clock
) -> None:
    endpoint, _ = add(hook_box, receiver.url)
    emit(hook_box)
    clock.advance(3600)
    emit(hook_box)
    dispatch(hook_box)
    first = sorted(receiver.ids(), key=lambda i: int(i.removeprefix("evt_")))
    assert len(first) == 2  # (delivered concurrently: in any order)
    queued = hook_box.replay_webhooks(clock.now - 60, clock.now + 1, endpoint.id)
    assert queued == 1
    dispatch(hook_box)
    assert receiver.ids()[2:] == [first[1]]  # only the event of the last minute
    later, _ = add(hook_box, receiver.url)  # a new endpoint can be given the history
    assert hook_box.replay_webhooks(0, clock.now + 1, later.id) == 2
