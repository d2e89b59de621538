"""DNS verification in running processes: ``notifier serve`` (API, intake processes and
its worker) follows a brand's DNS through its periodic checks without a restart, and
two worker processes check each brand once per period."""

from __future__ import annotations

import email
import email.policy
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.outbox import open_outbox
from notifier.signing.identity import dkim_identity
from tests.api.conftest import serving
from tests.conftest import postgres_schema
from tests.dns.support import World
from tests.test_outbox import raw_event
from tests.worker.support import spawn_worker, stop, wait_for

RECHECK = 3.0


def _captured(mail_dir: Path) -> list[email.message.EmailMessage]:
    out = []
    for path in sorted(mail_dir.glob("*.eml")):
        data = path.read_bytes()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        out.append(msg)
    return out


def _signer(msg: email.message.EmailMessage) -> str | None:
    return dkim_identity(msg.as_bytes().split(b"\n\n")[0].replace(b"\n", b"\r\n") + b"\r\n\r\n")[0]


def _env(world: World, **extra: str) -> dict[str, str]:
    return {
        "NOTIFIER_VAR_DIR": str(world.root / "var"),
        "NOTIFIER_KEY_DIR": str(world.key_dir),
        "NOTIFIER_BRANDS_DIR": str(world.brands_dir),
        "NOTIFIER_SECRET_KEY": "test-secret",
        "NOTIFIER_DNS_NAMESERVER": world.zone.nameserver,
        "NOTIFIER_DNS_TIMEOUT": "2s",
        **extra,
    }


def test_serve_follows_the_periodic_check_without_a_restart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(
        world,
        NOTIFIER_DNS_RECHECK=f"{RECHECK}s",
        NOTIFIER_DNS_REFRESH="0.2s",
        NOTIFIER_WORKER_POLL="0.05",
        NOTIFIER_INTAKE_PROCESSES="2",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(world.root)
    writer = CliRunner().invoke(app, ["token", "create", "--scope", "events:write"])
    assert writer.exit_code == 0, writer.output
    headers = {"Authorization": f"Bearer {writer.stdout.strip().splitlines()[0]}"}
    settings = world.settings()
    mail = settings.mail_dir
    world.publish(kustwebb={"dkim": False})  # kustwebb (policy hold) not verified yet

    def state() -> str | None:
        with open_outbox(settings) as outbox:
            found = outbox.brand_dns("kustwebb")
            return None if found is None else found.state

    def post(**data: Any) -> dict[str, Any]:
        event = raw_event("domain.nameservers_changed", brand="kustwebb", **data)
        answer = httpx.post(f"{url}/v1/events", json=event, headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text
        doc: dict[str, Any] = answer.json()
        return doc

    with serving(world.root, env) as url:
        wait_for(lambda: state() == "unverified", "the first periodic check", 60)
        held = post()
        assert held["status"] == "held"

        world.publish(kustwebb={})  # the reseller publishes its DKIM key
        wait_for(lambda: state() == "verified", "the recheck that verifies kustwebb", 60)
        wait_for(lambda: len(_captured(mail)) == 1, "the held message sent", 60)
        [released] = _captured(mail)
        assert _signer(released) == "kustwebb.fi"
        time.sleep(0.5)  # the API process re-reads the state at most every 0.2 s

        # a batch large enough for the intake processes, then single events
        batch = [
            raw_event("domain.nameservers_changed", brand="kustwebb", domain=f"d{i}.fi")
            for i in range(20)
        ]
        answer = httpx.post(
            f"{url}/v1/events/batch", json={"events": batch}, headers=headers, timeout=60
        )
        assert answer.status_code in (200, 202, 207), answer.text
        results = answer.json()["results"]
        assert len(results) == 20 and {item["status"] for item in results} == {"queued"}
        assert post(domain="yksi.fi")["status"] == "queued"
        wait_for(lambda: len(_captured(mail)) == 22, "the new messages sent", 60)
        sent = _captured(mail)
        assert {_signer(m) for m in sent} == {"kustwebb.fi"}
        assert {m["From"].addresses[0].domain for m in sent} == {"kustwebb.fi"}

        world.publish(kustwebb={"dkim": False})  # the record disappears again
        wait_for(lambda: state() == "unverified", "two failing rechecks", 60)
        time.sleep(0.5)
        assert post(domain="kaksi.fi")["status"] == "held"  # back to its policy
    with open_outbox(settings) as outbox:
        moves = [h.state for h in reversed(outbox.brand_dns_history("kustwebb", 100))]
        assert "broken-pending" in moves  # one failing check did not fall back at once
        with outbox.transaction(write=False) as cur:
            kinds = cur.execute(
                "SELECT data FROM outbox_events WHERE type = 'brand.dns_changed'"
            ).fetchall()
        assert len(kinds) == 3  # → verified, → broken-pending, → unverified


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, world: World) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{world.root / 'outbox.db'}"
        return
    with postgres_schema("dnslive") as url:
        yield url


def test_two_workers_check_each_brand_once_per_period(
    world: World, db_url: str, processes: list[Any], smtp_server: Any
) -> None:
    world.publish(acme={}, kustwebb={"dkim": False})
    settings = world.settings(database_url=db_url)
    open_outbox(settings).close()  # the schema, before two processes race to make it
    logs = [world.root / f"worker{i}.log" for i in (1, 2)]
    env = {
        k: v
        for k, v in _env(world, NOTIFIER_DNS_RECHECK=f"{RECHECK}s").items()
        if k.startswith(("NOTIFIER_DNS_", "NOTIFIER_BRANDS_"))
    }
    workers = [spawn_worker(processes, settings, smtp_server.url, log, **env) for log in logs]

    def history() -> dict[str, list[Any]]:
        with open_outbox(settings) as outbox:
            return {b: outbox.brand_dns_history(b, 100) for b in ("acme", "kustwebb")}

    wait_for(lambda: all(len(h) >= 3 for h in history().values()), "three checks of each brand", 90)
    for worker, log in zip(workers, logs, strict=True):
        stop(worker, log)
    found = history()
    for brand, checks in found.items():
        times = sorted(c.checked_at.timestamp() for c in checks)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # each period's check was claimed by one worker: never two within a period
        assert min(gaps) >= RECHECK * 0.9 - 0.05, (brand, gaps)
    assert {c.state for c in found["acme"]} == {"verified"}
    assert [c.state for c in reversed(found["kustwebb"])][:1] == ["unverified"]
    sources = {c.source for checks in found.values() for c in checks}
    assert sources <= {f"worker {n}" for n in sources_of(logs)}


def sources_of(logs: list[Path]) -> set[str]:
    """Worker names from their start-up lines (``worker NAME started``)."""
    names = set()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if " started (" in line and "worker " in line:
                names.add(line.split("worker ", 1)[1].split(" started", 1)[0])
    return names
