"""The worker against real servers: aiosmtpd with injected faults, real worker processes.

In-process tests drive time with the fake clock (retries, leases); the process tests
(two workers sharing PostgreSQL, ``kill -9`` mid-batch, SIGTERM) run
``python -m notifier.worker`` on the real clock with a short lease. Waiting loops have
generous limits only so that a bug cannot hang the suite; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest

from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.delivery.smtp import RelayTransport, Timeouts
from notifier.errors import SigningError
from notifier.outbox import Outbox, OutboxConfig, Status
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig, WorkerStats
from tests import test_outbox as contract
from tests.smtpd import Fault, SMTPTestServer
from tests.test_outbox import Clock, FakeDNS, count, raw_event, reminder

# the contract tests' fixtures: one database of each kind per test, keys, a fake clock
db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box

fault = pytest.mark.smtp_fault
FAST = Timeouts(connect=2.0, command=2.0, data=2.0, data_block=2.0, final=5.0, quit=1.0)
MINUTE = 60.0
BRANDS = BrandRegistry(Settings().brands_dir, Settings().platform_brand)


def message_id_of(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return str(msg["Message-ID"])


def run_worker(
    box: Outbox,
    key_dir: Path,
    url: str,
    *,
    signer: Signer | None = None,
    config: WorkerConfig | None = None,
    control: Callable[[Worker], Any] | None = None,
) -> WorkerStats:
    """One in-process worker until nothing is due (or ``control`` stops it)."""

    async def go() -> WorkerStats:
        transport = RelayTransport(url, timeouts=FAST, helo="worker.notifier.test")
        worker = Worker(
            box.outbox,
            transport,
            signer or Signer(KeyStore(key_dir)),
            config=config or WorkerConfig(poll_interval=0.01, flush_interval=0.01),
            brands=BRANDS,
        )
        watcher = asyncio.create_task(control(worker)) if control else None
        try:
            return await worker.run(until_idle=control is None)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await transport.close()

    return asyncio.run(go())


# --- delivery outcomes -----------------------------------------------------------------------


def test_sent_through_real_smtp_with_evidence(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer, pipeline: Pipeline
) -> None:
    ids = [
        r.id
        for r in box.accept_batch(
            [
                reminder(30),
                raw_event("reseller.invoice_issued", brand="acme", to="billing@acme.example"),
                reminder(7, brand="kustwebb", lang="sv"),
                raw_event("domain.nameservers_changed", brand="nordname", lang="en"),
            ]
        )
    ]
    stats = run_worker(box, key_dir, smtp_server.url)
    assert stats.sent == 4 and stats.claimed == 4
    received = {message_id_of(m.data): m for m in smtp_server.messages}
    assert len(received) == 4
    dns = FakeDNS(key_dir, pipeline)
    for i in ids:
        record = box.get(i)
        assert record.status == Status.SENT
        [attempt] = record.attempt_log
        assert (attempt.outcome, attempt.code, attempt.enhanced) == ("sent", 250, "2.0.0")
        assert attempt.host == f"127.0.0.1:{smtp_server.port}"
        got = received[record.message_id]
        assert got.mail_from == record.mail_from and got.rcpt_tos == [record.rcpt_to]
        raw = box.raw(i)
        assert raw.signed and raw.data == got.data  # the exact bytes the server got
        assert dkim.verify(got.data, dnsfunc=dns)
        assert record.dkim_domain == "nordname.com" and record.dkim_selector == "nn2026a"
    assert smtp_server.sessions <= 4  # pooled connections, not one per message


@pytest.mark.parametrize(
    ("at", "reply"),
    [
        ("RCPT", "451 4.3.0 Try again later"),
        ("DOT", "451 4.3.0 Try again later"),
        ("RCPT", "452 4.5.3 Too many recipients"),
        ("CONNECT", "421 4.3.2 Not now"),
    ],
)
def test_transient_reply_defers_then_sends_with_the_same_message_id(
    box: Outbox,
    key_dir: Path,
    clock: Clock,
    smtp_server_factory: Callable[..., SMTPTestServer],
    at: str,
    reply: str,
) -> None:
    server = smtp_server_factory(Fault(at, reply, times=1))
    mid = box.accept(reminder(30)).id
    stats = run_worker(box, key_dir, server.url)
    assert stats.deferred == 1
    record = box.get(mid)
    assert record.status == Status.DEFERRED
    code, enhanced = reply.split()[:2]
    assert (record.reason or "").startswith(f"{code} {enhanced}")
    assert record.next_attempt_at is not None
    assert 4.5 * MINUTE <= record.next_attempt_at.timestamp() - clock.now <= 5.5 * MINUTE
    [attempt] = record.attempt_log
    assert (attempt.code, attempt.enhanced) == (int(code), enhanced)
    assert server.messages == []

    assert run_worker(box, key_dir, server.url).claimed == 0  # not due yet
    clock.advance(6 * MINUTE)
    assert run_worker(box, key_dir, server.url).sent == 1
    record = box.get(mid)
    assert record.status == Status.SENT and record.attempts == 2
    [got] = server.messages
    assert message_id_of(got.data) == record.message_id


def test_550_no_such_user_fails_and_suppresses(
    box: Outbox, key_dir: Path, smtp_server_factory: Callable[..., SMTPTestServer]
) -> None:
    server = smtp_server_factory(Fault("RCPT", "550 5.1.1 No such user here", times=1))
    first = box.accept(raw_event("domain.nameservers_changed", to="gone@example.fi")).id
    assert run_worker(box, key_dir, server.url).failed == 1
    record = box.get(first)
    assert record.status == Status.FAILED and "550 5.1.1" in (record.reason or "")
    assert box.is_suppressed("acme", "gone@example.fi")
    optional = box.accept(raw_event("domain.dnssec_changed", to="gone@example.fi"))
    mandatory = box.accept(reminder(30, to="gone@example.fi"))
    assert optional.status == Status.SUPPRESSED and mandatory.status == Status.QUEUED
    assert run_worker(box, key_dir, server.url).sent == 1
    assert box.get(mandatory.id).status == Status.SENT
    assert [m.rcpt_tos for m in server.messages] == [["gone@example.fi"]]


def test_disconnect_after_the_dot_is_a_possible_duplicate_resent_with_same_id(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server_factory: Callable[..., SMTPTestServer]
) -> None:
    server = smtp_server_factory(Fault("DOT", action="disconnect", times=1))
    mid = box.accept(reminder(30)).id
    run_worker(box, key_dir, server.url)
    record = box.get(mid)
    assert record.status == Status.DEFERRED and record.possible_duplicate
    assert record.attempt_log[0].possible_duplicate
    clock.advance(10 * MINUTE)
    run_worker(box, key_dir, server.url)
    assert box.get(mid).status == Status.SENT
    # the server stored it twice; both copies carry the Message-ID fixed at acceptance
    assert [message_id_of(m.data) for m in server.messages] == [record.message_id] * 2


def test_suppressed_after_acceptance_is_not_sent(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    mid = box.accept(raw_event("domain.dnssec_changed", to="late@example.fi")).id
    box.suppress("acme", "late@example.fi", "550 5.1.1 earlier bounce")
    assert run_worker(box, key_dir, smtp_server.url).suppressed == 1
    assert box.get(mid).status == Status.SUPPRESSED
    assert smtp_server.messages == []


def test_stale_message_fails_447_without_sending(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    mid = box.accept(reminder(30)).id
    clock.advance(4 * 24 * 3600 + 2 * 3600)  # workers were down past the deadline
    assert run_worker(box, key_dir, smtp_server.url).failed == 1
    record = box.get(mid)
    assert record.status == Status.FAILED and (record.reason or "").startswith("4.4.7")
    assert smtp_server.messages == []


class PoisonSigner(Signer):
    def sign(self, message: bytes, brand: Any) -> bytes:
        if b"poison@" in message:
            raise SigningError("selector key unreadable")
        return super().sign(message, brand)


def test_poison_message_waits_with_a_reason_and_the_queue_flows(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    ids = [
        r.id
        for r in box.accept_batch(
            [
                reminder(1),
                reminder(2, to="poison@example.fi"),
                reminder(3),
            ]
        )
    ]
    stats = run_worker(box, key_dir, smtp_server.url, signer=PoisonSigner(KeyStore(key_dir)))
    assert (stats.sent, stats.deferred) == (2, 1)
    poison = box.get(ids[1])
    assert poison.status == Status.DEFERRED
    assert "signing failed: selector key unreadable" in (poison.reason or "")
    assert len(smtp_server.messages) == 2


# --- leases and shutdown ----------------------------------------------------------------------


def test_expired_lease_is_reclaimed_and_sent_once(
    box: Outbox, key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    assert len(box.claim("worker-that-died", 10)) == 3
    assert run_worker(box, key_dir, smtp_server.url).claimed == 0  # leases still valid
    clock.advance(16 * MINUTE)
    assert run_worker(box, key_dir, smtp_server.url).sent == 3
    for i in ids:
        record = box.get(i)
        assert record.status == Status.SENT and record.attempts == 2
        assert "interrupted" in record.attempt_log[0].text
    assert sorted(message_id_of(m.data) for m in smtp_server.messages) == sorted(
        box.get(i).message_id for i in ids
    )


@fault("DOT", action="delay", delay=0.2)
def test_stop_finishes_in_flight_sends_and_releases_the_rest(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept_batch([reminder(i) for i in range(20)])

    async def stop_after_first(worker: Worker) -> None:
        while not smtp_server.messages:
            await asyncio.sleep(0.01)
        worker.stop()

    stats = run_worker(
        box,
        key_dir,
        smtp_server.url,
        control=stop_after_first,
        config=WorkerConfig(batch_size=10, concurrency=2, poll_interval=0.01),
    )
    by_status = box.stats()["by_status"]
    assert by_status["sending"] == 0
    assert stats.sent >= 1 and stats.released >= 1
    assert by_status["sent"] == stats.sent == len(smtp_server.messages)
    assert by_status["queued"] == 20 - stats.sent


# --- real worker processes ------------------------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def spawn_worker(
    procs: list[subprocess.Popen[bytes]],
    settings: Settings,
    smtp_url: str,
    log: Path,
    *extra: str,
    **env: str,
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    environ.update(
        NOTIFIER_VAR_DIR=str(settings.var_dir),
        NOTIFIER_KEY_DIR=str(settings.keys_path),
        NOTIFIER_SECRET_KEY="test-secret",
        NOTIFIER_DATABASE_URL=settings.database,
        NOTIFIER_SMTP_URL=smtp_url,
        NOTIFIER_WORKER_POLL="0.05",
        **env,
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier.worker", *extra],
            env=environ,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    procs.append(proc)
    return proc


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text(errors="replace")


@pytest.fixture
def live_box(make_box: Callable[..., Outbox]) -> Outbox:
    """The outbox on the real clock, as the worker processes see it."""
    return make_box(clock=time.time)


def test_two_worker_processes_share_the_queue_each_message_sent_once(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # PostgreSQL: SKIP LOCKED claims (several machines); SQLite: claims serialised by
    # BEGIN IMMEDIATE (several processes on one machine)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [
        spawn_worker(processes, box_settings, smtp_server.url, log, "--batch", "25") for log in logs
    ]
    wait_for(
        lambda: (
            all("started" in log.read_text() for log in logs if log.exists())
            and all(log.exists() for log in logs)
        ),
        "both workers to start",
    )
    n = 600
    for start in range(0, n, 100):
        live_box.accept_batch(
            [reminder(i, domain=f"domain-{i}.fi") for i in range(start, start + 100)]
        )
    wait_for(lambda: count(live_box, Status.SENT) == n, f"{n} messages sent")
    for proc, log in zip(workers, logs, strict=True):
        stop(proc, log)

    records = [live_box.get(r.id) for r in live_box.search(limit=n)]
    assert len(records) == n and all(r.status == Status.SENT for r in records)
    assert all(len(r.attempt_log) == 1 for r in records)  # nobody sent anything twice
    received = [message_id_of(m.data) for m in smtp_server.messages]
    assert len(received) == n and set(received) == {r.message_id for r in records}
    names = {r.attempt_log[0].worker for r in records}
    assert len(names) == 2  # both workers took part


@pytest.mark.smtp_fault("DOT", action="delay", delay=0.3)
def test_kill_9_mid_batch_then_restart_every_message_sent(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    n = 30
    ids = [r.id for r in live_box.accept_batch([reminder(i) for i in range(n)])]
    url = f"{smtp_server.url}?pool_size=4"
    log = tmp_path / "worker.log"
    first = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
    # the server stores each message, then waits 0.3 s before its 250: killing the
    # worker now leaves messages the server has but the outbox does not know are sent
    wait_for(lambda: len(smtp_server.messages) >= 3, "the first deliveries")
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    assert count(live_box, Status.SENDING) > 0
    smtp_server.handler.faults.clear()

    second = spawn_worker(processes, box_settings, url, log, NOTIFIER_LEASE="2s")
    wait_for(lambda: count(live_box, Status.SENT) == n, "every message sent after restart")
    stop(second, log)

    records = [live_box.get(i) for i in ids]
    assert all(r.status == Status.SENT for r in records)
    by_id: dict[str, int] = {}
    for m in smtp_server.messages:
        mid = message_id_of(m.data)
        by_id[mid] = by_id.get(mid, 0) + 1
    assert set(by_id) == {r.message_id for r in records}  # none lost
    resent = [r for r in records if by_id[r.message_id] > 1]
    assert resent, "the kill should have caught a delivery before its 250"
    for r in resent:  # the resend carries the Message-ID fixed at acceptance
        assert any("interrupted" in a.text for a in r.attempt_log)
        assert by_id[r.message_id] == 2


@pytest.mark.smtp_fault("DOT", action="delay", delay=0.2)
def test_sigterm_in_a_worker_process_releases_unstarted_messages(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    n = 40
    live_box.accept_batch([reminder(i) for i in range(n)])
    log = tmp_path / "worker.log"
    proc = spawn_worker(
        processes,
        box_settings,
        f"{smtp_server.url}?pool_size=4",
        log,
        "--batch",
        "20",
        "--concurrency",
        "4",
    )
    wait_for(lambda: len(smtp_server.messages) >= 2, "the first deliveries")
    stop(proc, log)
    stats = live_box.stats()["by_status"]
    assert stats["sending"] == 0
    assert stats["sent"] == len(smtp_server.messages)  # in-flight sends were finished
    assert stats["queued"] == n - stats["sent"] > 0  # the rest went back to the queue
    assert "released" in log.read_text()


def test_until_idle_process_exits_when_done(
    live_box: Outbox,
    box_settings: Settings,
    smtp_server: SMTPTestServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    live_box.accept_batch([reminder(i) for i in range(5)])
    log = tmp_path / "worker.log"
    proc = spawn_worker(processes, box_settings, smtp_server.url, log, "--until-idle")
    assert proc.wait(120) == 0, log.read_text(errors="replace")
    assert count(live_box, Status.SENT) == 5 and len(smtp_server.messages) == 5


@fault("DOT", action="delay", delay=0.4)
def test_heartbeat_keeps_the_lease_of_a_slow_send(
    make_box: Callable[..., Outbox], key_dir: Path, clock: Clock, smtp_server: SMTPTestServer
) -> None:
    box = make_box(OutboxConfig(lease=60.0))
    mid = box.accept(reminder(30)).id
    seen: dict[str, float] = {}

    async def age_the_lease(worker: Worker) -> None:
        while not smtp_server.messages:  # the send is in flight
            await asyncio.sleep(0.01)
        clock.advance(50.0)  # most of the lease has gone by
        await asyncio.sleep(0.15)  # heartbeats every 0.02 s
        record = await asyncio.to_thread(box.get, mid)
        assert record.lease_expires_at is not None
        seen["lease_left"] = record.lease_expires_at.timestamp() - clock.now
        while box.get(mid).status != Status.SENT:
            await asyncio.sleep(0.02)
        worker.stop()

    run_worker(
        box,
        key_dir,
        smtp_server.url,
        control=age_the_lease,
        config=WorkerConfig(poll_interval=0.01, flush_interval=0.01, heartbeat_interval=0.02),
    )
    assert seen["lease_left"] > 55.0
    assert box.get(mid).status == Status.SENT and len(smtp_server.messages) == 1


# --- the CLI commands (mounted on a bare app here; the main CLI calls register) --------------


@pytest.fixture
def cli(
    box_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., Any]:
    import typer
    from typer.testing import CliRunner

    from notifier.cli.queue import register

    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """notifier (test mount)"""

    register(app)
    for key in [k for k in os.environ if k.startswith("NOTIFIER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(box_settings.var_dir))
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(box_settings.keys_path))
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "test-secret")
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", box_settings.database)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args))

    return invoke


def test_cli_send_test_prints_the_smtp_reply(
    cli: Callable[..., Any], smtp_server: SMTPTestServer, key_dir: Path, pipeline: Pipeline
) -> None:
    result = cli(
        "send-test",
        "--brand",
        "acme",
        "--event",
        "domain.renewal_reminder",
        "--lang",
        "sv",
        "--to",
        "ops@example.fi",
        "--smtp",
        smtp_server.url,
    )
    assert result.exit_code == 0, result.output
    assert "sent: 250 2.0.0 OK queued" in result.stdout
    [got] = smtp_server.messages
    assert got.rcpt_tos == ["ops@example.fi"]
    assert message_id_of(got.data) in result.stdout
    assert dkim.verify(got.data, dnsfunc=FakeDNS(key_dir, pipeline))


@pytest.mark.smtp_fault("RCPT", "550 5.1.1 No such user")
def test_cli_send_test_failures_exit_non_zero(
    cli: Callable[..., Any], smtp_server: SMTPTestServer
) -> None:
    base = ["send-test", "--brand", "acme", "--event", "domain.renewal_reminder"]
    refused = cli(*base, "--to", "gone@example.fi", "--smtp", smtp_server.url)
    assert refused.exit_code == 1 and "permanent: 550 5.1.1" in refused.stdout
    bad_to = cli(*base, "--to", "not an address", "--smtp", smtp_server.url)
    assert bad_to.exit_code == 2 and "--to" in bad_to.stderr
    bad_event = cli("send-test", "--brand", "acme", "--event", "domain.nope", "--to", "a@b.fi")
    assert bad_event.exit_code == 2 and "unknown event" in bad_event.stderr
    bad_brand = cli("send-test", "--brand", "nosuch", "--event", "domain.renewed", "--to", "a@b.fi")
    assert bad_brand.exit_code == 2 and "unknown brand" in bad_brand.stderr
    bad_url = cli(*base, "--to", "a@b.fi", "--smtp", "ftp://relay")
    assert bad_url.exit_code == 2 and "unsupported URL" in bad_url.stderr


def test_cli_worker_and_queue_commands(
    cli: Callable[..., Any], make_box: Callable[..., Outbox], smtp_server: SMTPTestServer
) -> None:
    import json

    box = make_box(clock=time.time)
    sent_id = box.accept(reminder(30)).id
    queued_raw = cli("queue", "show", str(sent_id), "--raw")
    assert queued_raw.exit_code == 0 and "not been sent yet" in queued_raw.stderr
    assert queued_raw.stdout_bytes == box.raw(sent_id).data

    worker = cli("worker", "--until-idle", "--smtp", smtp_server.url, "--poll", "0.05")
    assert worker.exit_code == 0, worker.output
    assert box.get(sent_id).status == Status.SENT

    shown = cli("queue", "show", str(sent_id), "--raw")
    assert shown.exit_code == 0
    [got] = smtp_server.messages
    assert shown.stdout_bytes == got.data  # exactly as sent
    human = cli("queue", "show", str(sent_id))
    assert human.exit_code == 0 and "status" in human.stdout and "250 2.0.0" in human.stdout
    as_json = json.loads(cli("queue", "show", str(sent_id), "--json").stdout)
    assert as_json["status"] == "sent" and as_json["attempt_log"][0]["code"] == 250

    stats = json.loads(cli("queue", "stats", "--json").stdout)
    assert stats["by_status"]["sent"] == 1 and stats["database"] == box.kind
    assert "sent       1" in cli("queue", "stats").stdout

    not_retryable = cli("queue", "retry", str(sent_id))
    assert not_retryable.exit_code == 1 and "only failed" in not_retryable.stderr
    missing = cli("queue", "retry", "999999")
    assert missing.exit_code == 1 and "no message 999999" in missing.stderr
    assert cli("queue", "retry").exit_code == 2
    assert cli("queue", "retry", "1", "--failed").exit_code == 2
    assert cli("queue", "show", "abc").exit_code == 2
    nothing = cli("queue", "retry", "--failed")
    assert nothing.exit_code == 0 and "queued 0 failed" in nothing.stdout


def test_stop_before_run_starts_returns_at_once(
    box: Outbox, key_dir: Path, smtp_server: SMTPTestServer
) -> None:
    box.accept(reminder(1))

    async def go() -> WorkerStats:
        transport = RelayTransport(smtp_server.url, timeouts=FAST)
        worker = Worker(box.outbox, transport, Signer(KeyStore(key_dir)), brands=BRANDS)
        task = asyncio.create_task(worker.run())  # not started yet
        worker.stop()
        try:
            return await asyncio.wait_for(task, 30)
        finally:
            await transport.close()

    stats = asyncio.run(go())
    assert stats.sent == 0 and box.stats()["by_status"]["queued"] == 1
