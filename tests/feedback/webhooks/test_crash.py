"""Workers killed with ``kill -9`` while webhooks are in flight: real ``python -m
notifier.worker`` processes, a real receiver on loopback. Every event arrives at least
once, and every copy of an event carries the same ``webhook-id``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from notifier.config import Secret, Settings
from notifier.outbox import open_outbox
from tests.feedback.webhooks.conftest import add, emit
from tests.feedback.webhooks.receiver import Receiver
from tests.worker.support import spawn_worker, stop, wait_for

EVENTS = 60


def test_kill_9_while_webhooks_are_in_flight(
    db_url: str, tmp_path: Path, receiver: Receiver, processes: list[subprocess.Popen[bytes]]
) -> None:
    settings = Settings(
        var_dir=tmp_path / "var", secret_key=Secret("test-secret"), database_url=db_url
    )
    log = tmp_path / "worker.log"
    receiver.delay = 0.2  # each answer takes a while: many attempts are in flight at a kill
    with open_outbox(settings) as box:
        endpoint, _ = add(box, receiver.url, "message.sent")
        for i in range(EVENTS):
            emit(box, "message.sent", n=i)
        env = {"NOTIFIER_LEASE": "3s", "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "1"}
        first = [spawn_worker(processes, settings, "", log, **env) for _ in range(2)]
        wait_for(lambda: len(receiver.received) >= 5, "the first webhooks")
        for proc in first:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert len({*receiver.ids()}) < EVENTS, "all delivered before the kill: no test"
        last = spawn_worker(processes, settings, "", log, **env)
        wait_for(lambda: box.endpoint(endpoint.id).pending == 0, "every delivery", 120)
        wait_for(lambda: _open_leases(box) == 0, "the leases of the dead", 120)
        stop(last, log)
    received = receiver.received
    by_n: dict[int, set[str]] = {}
    for r in received:
        by_n.setdefault(json.loads(r.body)["data"]["n"], set()).add(r.headers["webhook-id"])
    assert sorted(by_n) == list(range(EVENTS))  # every event at least once
    assert all(len(ids) == 1 for ids in by_n.values())  # one id per event, however often


def _open_leases(box: object) -> int:
    with box.transaction(write=False) as cur:  # type: ignore[attr-defined]
        row = cur.execute(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'"
        ).fetchone()
    return int(row[0])
