"""The outbox contract, run on SQLite and on a real PostgreSQL.

PostgreSQL runs when ``NOTIFIER_TEST_DATABASE_URL`` is set (``scripts/start-postgres.sh``
prints one); each test gets its own schema. Without it the PostgreSQL variants are
skipped locally and FAIL when ``CI=true``. Time is a fake clock: retries and leases are
tested by moving it, never by sleeping.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import pytest

from notifier import events as catalog
from notifier.compose.pipeline import Pipeline
from notifier.config import Secret, Settings, parse_duration
from notifier.delivery.policy import decide, retry_delay
from notifier.delivery.transport import AttemptResult
from notifier.errors import Conflict, RenderError, StorageError, ValidationError
from notifier.fields import domain_to_ascii
from notifier.outbox import (
    Accepted,
    Claim,
    Delivery,
    InvalidState,
    MessageNotFound,
    Outbox,
    OutboxConfig,
    Status,
    open_outbox,
)
from notifier.outbox.model import DAY, HOUR, LATENCY_BUCKETS, MINUTE, Metrics
from notifier.signing.dkim import Signer
from notifier.signing.identity import dkim_identity
from notifier.signing.keys import KeyStore
from tests.conftest import open_box, postgres_schema

T0 = 1_800_000_000.0  # 2027-01-15, a fixed "now"

# --- fixtures shared with test_worker.py ------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a new schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Path:
    """DKIM keys for every brand's selectors (made once per session)."""
    folder = tmp_path_factory.mktemp("keys")
    store = KeyStore(folder)
    for brand in pipeline.brands.all():
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm)
    return folder


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box_settings(tmp_path: Path, key_dir: Path, db_url: str) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        key_dir=key_dir,
        secret_key=Secret("test-secret"),
        database_url=db_url,
    )


@pytest.fixture
def make_box(
    box_settings: Settings, pipeline: Pipeline, clock: Clock
) -> Iterator[Callable[..., Outbox]]:
    opened: list[Outbox] = []

    def make(config: OutboxConfig | None = None, **kwargs: Any) -> Outbox:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", random.Random(7))
        box = open_box(box_settings, pipeline, config or OutboxConfig(), **kwargs)
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture
def box(make_box: Callable[..., Outbox]) -> Outbox:
    return make_box()


def raw_event(
    name: str = "domain.renewal_reminder",
    *,
    brand: str = "acme",
    to: str = "aino@example.fi",
    lang: str | None = "fi",
    key: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": name,
        "brand": brand,
        "recipient": {"email": to, "name": "Aino Virtanen", "language": lang},
        "data": {**catalog.CATALOG[name].sample, **data},
    }
    if key is not None:
        body["idempotency_key"] = key
    return body


def reminder(i: int, *, domain: str | None = None, **kw: Any) -> dict[str, Any]:
    """Renewal reminders for distinct occasions (``days_left``) unless told otherwise."""
    data: dict[str, Any] = {"days_left": i % 400}
    if domain is not None:
        data["domain"] = domain
    data.update(kw.pop("data", {}))
    return raw_event("domain.renewal_reminder", **kw, **data)


def count(box: Outbox, status: Status | None = None) -> int:
    stats = box.stats()
    return int(stats["total"] if status is None else stats["by_status"][str(status)])


class FakeDNS:
    """dkimpy ``dnsfunc`` answering from the key store's records."""

    def __init__(self, key_dir: Path, pipeline: Pipeline) -> None:
        store = KeyStore(key_dir)
        self.records = {}
        for brand in pipeline.brands.all():
            for sel in brand.dkim:
                rec = store.record(brand, sel.name)
                self.records[rec.name + "."] = rec.value

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        key = name.decode() if isinstance(name, bytes) else name
        value = self.records.get(key)
        return value.encode() if value is not None else None


def signed_delivery(
    box: Outbox,
    claim: Claim,
    key_dir: Path,
    result: AttemptResult,
    now: float,
) -> Delivery:
    """What the worker records: sign, then classify ``result``."""
    brand = box.pipeline.brands.get(claim.sign_brand)
    signed = Signer(KeyStore(key_dir)).sign(claim.data, brand)
    assert signed.endswith(claim.data)
    head = signed[: len(signed) - len(claim.data)]
    decision = decide(box.config, claim, result, now, box.rng)
    domain, selector = dkim_identity(head)
    return Delivery(
        id=claim.id,
        status=decision.status,
        reason=decision.reason,
        next_attempt_at=decision.next_attempt_at,
        attempt=result,
        signed_head=head,
        sent_sha256=hashlib.sha256(signed).hexdigest(),
        dkim_domain=domain,
        dkim_selector=selector,
        suppress=decision.suppress,
        rcpt_to=claim.rcpt_to,
        brand=claim.brand,
    )


OK = AttemptResult("sent", host="mx.example.fi:25", code=250, enhanced="2.0.0", text="OK queued")
BUSY = AttemptResult(
    "transient", host="mx.example.fi:25", code=451, enhanced="4.3.0", text="Try again later"
)
NO_USER = AttemptResult(
    "permanent", host="mx.example.fi:25", code=550, enhanced="5.1.1", text="No such user"
)


# --- accept --------------------------------------------------------------------------------


def test_accept_stores_rendered_message(box: Outbox, clock: Clock) -> None:
    accepted = box.accept(reminder(30))
    assert accepted.status == Status.QUEUED and not accepted.duplicate
    assert accepted.language == "fi"
    record = box.get(accepted.id)
    assert record.status == Status.QUEUED and record.attempts == 0
    assert record.message_id == accepted.message_id
    assert record.event == "domain.renewal_reminder" and record.mandatory
    sample_domain = catalog.CATALOG["domain.renewal_reminder"].sample["domain"]
    assert record.domain == domain_to_ascii(sample_domain)
    assert record.next_attempt_at is not None and record.next_attempt_at.timestamp() == T0
    assert record.deadline.timestamp() == T0 + 4 * DAY
    raw = box.raw(accepted.id)
    assert not raw.signed
    assert f"Message-ID: {accepted.message_id}".encode() in raw.data
    assert hashlib.sha256(raw.data).hexdigest() == record.data_sha256 == raw.sha256


def test_unverified_brand_goes_out_via_platform(box: Outbox) -> None:
    # acme's DNS is not verified and its policy is "platform": the platform signs and
    # bounces, the reseller's name stays in From.
    record = box.get(box.accept(reminder(1)).id)
    assert (record.brand, record.sender_brand, record.sign_brand) == ("acme", "acme", "nordname")
    assert record.mail_from == "bounces@bounces.nordname.com"
    head = box.raw(record.id).data.split(b"\r\n\r\n")[0]
    assert b"From: Acme Digital <verkkotunnukset@nordname.com>" in head
    assert record.message_id.endswith("@nordname.com>")


def test_batch_validation_errors_name_each_field_and_store_nothing(box: Outbox) -> None:
    bad = reminder(2)
    del bad["data"]["expires_at"]
    worse = reminder(3, to="not-an-address")
    with pytest.raises(ValidationError) as info:
        box.accept_batch([reminder(1), bad, worse])
    locs = {e.loc for e in info.value.errors}
    assert "events[1].data.expires_at" in locs
    assert any(loc.startswith("events[2].recipient.email") for loc in locs)
    assert count(box) == 0
    with pytest.raises(ValidationError):
        box.accept_batch({"not": "a list"})
    with pytest.raises(ValidationError):
        box.accept_batch([reminder(i) for i in range(box.config.max_batch + 1)])


@pytest.fixture
def explodes_at_13(box: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering the reminder with ``days_left == 13`` fails (a broken template)."""
    real = box.pipeline.compose

    def compose(event: Any, **kw: Any) -> Any:
        if event.data.days_left == 13:
            raise RenderError("template exploded")
        return real(event, **kw)

    monkeypatch.setattr(box.pipeline, "compose", compose)


@pytest.mark.usefixtures("explodes_at_13")
def test_render_error_reaches_the_caller_and_nothing_is_stored(box: Outbox) -> None:
    with pytest.raises(RenderError, match="exploded") as info:
        box.accept_batch([reminder(12), reminder(13)])
    assert "events[1]" in " ".join(info.value.__notes__)
    assert count(box) == 0


@pytest.mark.usefixtures("explodes_at_13")
def test_accept_each_stores_the_good_items_and_returns_each_bad_ones_error(box: Outbox) -> None:
    box.accept(reminder(5, key="k"))
    bad = reminder(2)
    del bad["data"]["expires_at"]
    results = box.accept_each(
        [reminder(1), bad, reminder(13), reminder(6, key="k"), reminder(5, key="k"), reminder(7)]
    )
    first, invalid, unrenderable, conflict, duplicate, last = results
    assert isinstance(first, Accepted) and not first.duplicate
    assert isinstance(invalid, ValidationError)
    assert [e.loc for e in invalid.errors] == ["events[1].data.expires_at"]
    assert isinstance(unrenderable, RenderError)
    assert "while rendering events[2]" in unrenderable.__notes__
    assert isinstance(conflict, Conflict)
    assert isinstance(duplicate, Accepted) and duplicate.duplicate
    assert isinstance(last, Accepted) and not last.duplicate
    assert count(box) == 3
    # nothing good: nothing stored, every error returned
    only_bad = box.accept_each([bad, reminder(13)], prefix="items")
    assert [type(r) for r in only_bad] == [ValidationError, RenderError]
    assert only_bad[0].errors[0].loc == "items[0].data.expires_at"  # type: ignore[union-attr]
    assert box.accept_each([]) == []
    assert count(box) == 3
    with pytest.raises(ValidationError):
        box.accept_each([reminder(i) for i in range(box.config.max_batch + 1)])


# --- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_returns_the_existing_message(box: Outbox) -> None:
    first = box.accept(reminder(5, key="order-1"))
    again = box.accept(reminder(5, key="order-1"))
    assert again.duplicate and again.id == first.id and again.message_id == first.message_id
    # the same request spelled differently is still the same request
    spelled = reminder(5, key="order-1")
    spelled["data"]["price"] = {"amount": "12.500", "currency": "EUR"}
    assert box.accept(spelled).id == first.id
    # a key is scoped to its brand
    other = box.accept(reminder(5, key="order-1", brand="kustwebb"))
    assert not other.duplicate and other.id != first.id
    assert count(box) == 2


def test_same_key_different_body_is_409_and_enqueues_nothing(box: Outbox) -> None:
    box.accept(reminder(5, key="k"))
    with pytest.raises(Conflict, match="different request"):
        box.accept(reminder(6, key="k"))
    # in a batch, the conflict rejects every event of the batch
    with pytest.raises(Conflict):
        box.accept_batch([reminder(7), reminder(8, key="k"), reminder(9)])
    assert count(box) == 1


def test_concurrent_duplicates_make_one_message(make_box: Callable[..., Outbox]) -> None:
    box = make_box(OutboxConfig(busy_timeout=30.0))
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[Any] = []
    errors: list[BaseException] = []

    def accept(i: int) -> None:
        try:
            barrier.wait()
            results.append(box.accept(reminder(40, key="same-key")))
            results.append(box.accept(reminder(41)))  # natural-key twin, no key
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=accept, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors
    assert len(results) == 2 * threads
    assert len({r.id for r in results}) == 2
    assert sum(not r.duplicate for r in results) == 2
    assert count(box) == 2


def test_natural_key_dedupes_lifecycle_notices(box: Outbox) -> None:
    first = box.accept(reminder(30))
    assert box.accept(reminder(30)).id == first.id  # same occasion: never twice
    # same instant written in another offset is the same occasion
    same = reminder(30, data={"expires_at": "2026-12-26T21:59:59+00:00"})
    assert box.accept(same).duplicate
    assert not box.accept(reminder(7)).duplicate  # another occasion (7 days left)
    assert not box.accept(reminder(30, domain="toinen.fi")).duplicate
    assert not box.accept(reminder(30, brand="kustwebb")).duplicate
    assert count(box) == 4


def test_duplicates_within_one_batch_make_one_message(box: Outbox) -> None:
    results = box.accept_batch(
        [reminder(1, key="x"), reminder(1, key="x"), reminder(2), reminder(2), reminder(3)]
    )
    assert [r.duplicate for r in results] == [False, True, False, True, False]
    assert results[1].id == results[0].id and results[3].id == results[2].id
    assert results[0].id < results[2].id < results[4].id  # ids in batch order
    assert count(box) == 3


# --- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["domain.renewed", "domain.deleted", "transfer.out_completed"])
def test_renewal_cancels_unsent_reminders_of_that_domain(
    box: Outbox, clock: Clock, event: str
) -> None:
    domain = "virtasenpuutarha.fi"
    sent = box.accept(reminder(30, domain=domain)).id
    claim = box.claim("w", 1)[0]
    assert claim.id == sent
    box.complete("w", [Delivery(sent, Status.SENT, attempt=OK)])
    deferred = box.accept(reminder(20, domain=domain)).id
    [c] = box.claim("w", 1)
    box.complete("w", [Delivery(c.id, Status.DEFERRED, "451", T0 + 300, attempt=BUSY)])
    queued = box.accept(reminder(7, domain=domain)).id
    other_domain = box.accept(reminder(7, domain="kahvila-helmi.fi")).id
    other_brand = box.accept(reminder(7, domain=domain, brand="kustwebb")).id

    cancelling = box.accept(raw_event(event, domain=domain))
    assert cancelling.status == Status.QUEUED

    states = {i: box.get(i).status for i in (sent, deferred, queued, other_domain, other_brand)}
    assert states == {
        sent: Status.SENT,
        deferred: Status.CANCELLED,
        queued: Status.CANCELLED,
        other_domain: Status.QUEUED,
        other_brand: Status.QUEUED,
    }
    assert f"cancelled by {event}" in (box.get(queued).reason or "")
    # cancelled mail is never claimed
    claimed = {c.id for c in box.claim("w", 100)}
    assert claimed == {other_domain, other_brand, cancelling.id}


def test_reminder_accepted_after_renewal_in_the_same_batch_is_kept(box: Outbox) -> None:
    domain = "virtasenpuutarha.fi"
    results = box.accept_batch(
        [
            reminder(30, domain=domain),
            raw_event("domain.renewed", domain=domain),
            reminder(31, domain=domain),
        ]
    )
    assert [r.status for r in results] == [Status.QUEUED] * 3
    assert [box.get(r.id).status for r in results] == [
        Status.CANCELLED,
        Status.QUEUED,
        Status.QUEUED,
    ]


# --- states ---------------------------------------------------------------------------------


def test_hold_policy_holds_optional_mail_until_dns_is_verified(box: Outbox, clock: Clock) -> None:
    # kustwebb: DNS not verified, unverified_policy = "hold"
    held = box.accept(raw_event("domain.nameservers_changed", brand="kustwebb"))
    assert held.status == Status.HELD
    assert "hold" in (box.get(held.id).reason or "")
    # mandatory notices never wait: they go out via the platform
    urgent = box.accept(reminder(30, brand="kustwebb"))
    assert urgent.status == Status.QUEUED
    assert box.get(urgent.id).sign_brand == "nordname"
    assert {c.id for c in box.claim("w", 10)} == {urgent.id}
    clock.advance(10 * DAY)
    assert box.release_held(["acme"]) == 0
    assert box.release_held(["kustwebb"]) == 1
    record = box.get(held.id)
    assert record.status == Status.QUEUED and record.sign_brand == "kustwebb"
    assert record.deadline.timestamp() == clock.now + 4 * DAY  # lifetime starts again


def test_claim_lease_heartbeat_and_reclaim(make_box: Callable[..., Outbox], clock: Clock) -> None:
    box = make_box(OutboxConfig(lease=15 * MINUTE))
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(5)])]
    a = box.claim("worker-a", 3)
    assert [c.id for c in a] == ids[:3] and all(c.attempts == 0 for c in a)
    b = box.claim("worker-b", 10)
    assert [c.id for c in b] == ids[3:]  # leased messages are not handed out twice
    assert box.claim("worker-c", 10) == []
    clock.advance(10 * MINUTE)
    assert box.heartbeat("worker-a") == 3
    clock.advance(10 * MINUTE)  # a's lease was extended; b's has expired
    c = box.claim("worker-c", 10)
    assert sorted(x.id for x in c) == ids[3:]
    assert all(x.attempts == 1 for x in c)  # the interrupted attempt counts
    log = box.get(ids[3]).attempt_log
    assert len(log) == 1 and log[0].possible_duplicate and "interrupted" in log[0].text
    # worker b wakes up: its outcome is recorded as evidence but the state is c's
    lost = box.complete("worker-b", [Delivery(ids[3], Status.SENT, attempt=OK)])
    assert lost == [ids[3]]
    assert box.get(ids[3]).status == Status.SENDING
    assert box.complete("worker-c", [Delivery(ids[3], Status.SENT, attempt=OK)]) == []
    assert box.get(ids[3]).status == Status.SENT


def test_release_gives_unstarted_messages_back(box: Outbox, clock: Clock) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(4)])]
    claims = box.claim("w", 4)
    assert len(claims) == 4
    box.complete("w", [Delivery(claims[0].id, Status.SENT, attempt=OK)])
    assert box.release("w", [c.id for c in claims[1:3]]) == 2
    assert box.release("w") == 1
    assert [box.get(i).status for i in ids] == [Status.SENT] + [Status.QUEUED] * 3
    assert len(box.claim("x", 10)) == 3


def test_deferred_waits_then_fails_with_447_after_lifetime(
    make_box: Callable[..., Outbox], clock: Clock, key_dir: Path
) -> None:
    box = make_box(OutboxConfig(max_lifetime=2 * HOUR))
    mid = box.accept(reminder(3)).id
    attempts = 0
    while True:
        claims = box.claim("w", 1)
        if not claims:
            record = box.get(mid)
            assert record.status == Status.DEFERRED
            assert record.next_attempt_at is not None
            clock.now = record.next_attempt_at.timestamp() + 0.001  # datetime rounds to µs
            continue
        attempts += 1
        box.complete("w", [signed_delivery(box, claims[0], key_dir, BUSY, clock.now)])
        record = box.get(mid)
        if record.status == Status.FAILED:
            break
        assert record.status == Status.DEFERRED and "451 4.3.0" in (record.reason or "")
        wait = record.next_attempt_at.timestamp() - clock.now  # type: ignore[union-attr]
        assert wait > 0
        assert box.claim("w", 1) == []  # not before its time
        assert attempts < 20
    assert record.reason is not None and record.reason.startswith("4.4.7")
    # at 0, +5, +15, +35, +75 min, then the last attempt at the deadline (2 h)
    assert attempts == 6
    assert len(record.attempt_log) == 6
    assert all(a.code == 451 and a.enhanced == "4.3.0" for a in record.attempt_log)


def test_permanent_failure_fails_at_once_and_suppresses(box: Outbox, key_dir: Path) -> None:
    first = box.accept(raw_event("domain.nameservers_changed", to="Gone@Example.fi")).id
    [claim] = box.claim("w", 1)
    box.complete("w", [signed_delivery(box, claim, key_dir, NO_USER, T0)])
    record = box.get(first)
    assert record.status == Status.FAILED and "550 5.1.1" in (record.reason or "")
    assert box.is_suppressed("acme", "gone@example.fi")
    [entry] = box.suppressions("acme")
    assert (entry.email, entry.code, entry.enhanced, entry.message) == (
        "gone@example.fi",
        550,
        "5.1.1",
        first,
    )
    # later optional mail to the address is not sent; mandatory notices still are
    optional = box.accept(raw_event("domain.dnssec_changed", to="gone@example.fi"))
    assert optional.status == Status.SUPPRESSED
    mandatory = box.accept(reminder(9, to="gone@example.fi"))
    assert mandatory.status == Status.QUEUED
    # other brands are not affected
    assert (
        box.accept(
            raw_event("domain.dnssec_changed", to="gone@example.fi", brand="nordname")
        ).status
        == Status.QUEUED
    )
    assert box.unsuppress("acme", "GONE@example.fi")
    assert not box.is_suppressed("acme", "gone@example.fi")


def test_claim_flags_messages_suppressed_after_acceptance(box: Outbox) -> None:
    optional = box.accept(raw_event("domain.dnssec_changed", to="late@example.fi")).id
    box.suppress("acme", "late@example.fi", "550 5.1.1 no such user", code=550, enhanced="5.1.1")
    [claim] = box.claim("w", 1)
    assert claim.id == optional and claim.suppressed and not claim.mandatory


# --- evidence -----------------------------------------------------------------------------------


def test_evidence_exact_bytes_dkim_and_attempts_kept_then_purged(
    box: Outbox, clock: Clock, key_dir: Path, pipeline: Pipeline
) -> None:
    mid = box.accept(reminder(30)).id
    [claim] = box.claim("w", 1)
    box.complete("w", [signed_delivery(box, claim, key_dir, BUSY, clock.now)])
    clock.advance(HOUR)
    [claim] = box.claim("w", 1)
    delivery = signed_delivery(box, claim, key_dir, OK, clock.now)
    box.complete("w", [delivery])

    record = box.get(mid)
    assert record.status == Status.SENT and record.sent_at is not None
    assert (record.dkim_domain, record.dkim_selector) == ("nordname.com", "nn2026a")
    assert [(a.code, a.enhanced, a.outcome) for a in record.attempt_log] == [
        (451, "4.3.0", "transient"),
        (250, "2.0.0", "sent"),
    ]
    assert all(a.host == "mx.example.fi:25" and a.worker == "w" for a in record.attempt_log)
    raw = box.raw(mid)
    assert raw.signed and raw.sha256 == record.sent_sha256 == delivery.sent_sha256
    assert raw.data == delivery.signed_head + claim.data  # type: ignore[operator]
    assert dkim.verify(raw.data, dnsfunc=FakeDNS(key_dir, pipeline))

    retention = box.config.retention
    assert retention == 730 * DAY
    assert box.purge(now=clock.now + retention - DAY) == 0
    assert box.purge(now=clock.now + retention + DAY) == 1
    with pytest.raises(MessageNotFound):
        box.get(mid)


def test_tampered_evidence_is_detected(box: Outbox, clock: Clock, key_dir: Path) -> None:
    mid = box.accept(reminder(30)).id
    [claim] = box.claim("w", 1)
    box.complete("w", [signed_delivery(box, claim, key_dir, OK, clock.now)])
    with box.transaction() as cur:
        cur.execute(
            "UPDATE outbox_bodies SET data = ? WHERE message = ?",
            [claim.data.replace(b"Aino", b"Eino"), mid],
        )
    with pytest.raises(StorageError, match="SHA-256"):
        box.raw(mid)


def test_purge_works_in_chunks(box: Outbox, clock: Clock) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(5)])]
    box.complete("w", [Delivery(c.id, Status.SENT, attempt=OK) for c in box.claim("w", 5)])
    box.accept(reminder(9))  # still queued: kept
    assert box.purge(now=clock.now + box.config.retention + 1, chunk=2) == 5
    assert count(box) == 1
    for i in ids:
        with pytest.raises(MessageNotFound):
            box.raw(i)


def test_purge_keeps_unfinished_messages(box: Outbox, clock: Clock) -> None:
    box.accept(reminder(1))
    assert box.purge(now=clock.now + 10 * 365 * DAY) == 0
    assert count(box) == 1


# --- operations ----------------------------------------------------------------------------------


def test_retry_and_retry_failed(box: Outbox, clock: Clock, key_dir: Path) -> None:
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    claims = box.claim("w", 3)
    box.complete(
        "w",
        [
            signed_delivery(box, claims[0], key_dir, NO_USER, clock.now),
            signed_delivery(box, claims[1], key_dir, replace(NO_USER, enhanced="5.7.1"), clock.now),
            signed_delivery(box, claims[2], key_dir, OK, clock.now),
        ],
    )
    clock.advance(5 * DAY)
    record = box.retry(ids[0])
    assert record.status == Status.QUEUED and record.reason is None
    assert record.deadline.timestamp() == clock.now + 4 * DAY
    assert record.next_attempt_at is not None and record.next_attempt_at.timestamp() == clock.now
    with pytest.raises(InvalidState, match="is sent"):
        box.retry(ids[2])
    with pytest.raises(MessageNotFound):
        box.retry(999_999)
    assert box.retry_failed() == 1
    assert {c.id for c in box.claim("w", 10)} == {ids[0], ids[1]}


def test_stats(box: Outbox, clock: Clock) -> None:
    box.accept_batch([reminder(i) for i in range(3)])
    box.accept(raw_event("domain.nameservers_changed", brand="kustwebb"))
    box.claim("w", 1)
    stats = box.stats()
    assert stats["database"] == box.kind
    assert stats["by_status"]["queued"] == 2
    assert stats["by_status"]["sending"] == 1
    assert stats["by_status"]["held"] == 1
    assert stats["total"] == 4 and stats["due"] == 2
    clock.advance(16 * MINUTE)
    assert box.stats()["expired_leases"] == 1


def test_metrics_count_as_things_happen_and_never_go_down(
    box: Outbox, clock: Clock, key_dir: Path
) -> None:
    R = "domain.renewal_reminder"
    domain = "virtasenpuutarha.fi"
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    box.accept(reminder(9, domain=domain))
    clock.advance(42)
    claims = {c.id: c for c in box.claim("w", 3)}
    box.complete(
        "w",
        [
            Delivery(ids[0], Status.SENT, attempt=OK),
            signed_delivery(box, claims[ids[1]], key_dir, NO_USER, clock.now),
            Delivery(ids[2], Status.DEFERRED, "451", clock.now + 300, attempt=BUSY),
        ],
    )
    # cancels the 4th reminder; itself suppressed (the 550 5.1.1 above suppressed Aino)
    box.accept(raw_event("domain.renewed", domain=domain))
    m = box.metrics()
    acme = {name: v for (b, e, name), v in m.counters.items() if (b, e) == ("acme", R)}
    assert acme["accepted"] == 4 and acme["sent"] == 1 and acme["failed"] == 1
    assert acme["cancelled"] == 1 and "deferred" not in acme
    assert m.counters[("acme", "domain.renewed", "accepted")] == 1
    assert m.counters[("acme", "domain.renewed", "suppressed")] == 1
    # accept-to-sent: 42 s — in the 60 s bucket and above, not in the 30 s one
    assert acme["latency_sum"] == pytest.approx(42.0)
    # one bucket counter per sent message (its bucket's); the histogram sums them up
    assert sorted(n for n in acme if n.startswith("latency_")) == ["latency_in:60", "latency_sum"]
    assert m.latency_buckets() == [(b, 1 if b >= 60 else 0) for b in LATENCY_BUCKETS]
    assert m.live == {("acme", R, "deferred"): 1}
    assert m.suppressed == {"acme": 1}
    # a retried failure and purged history do not take anything back
    box.retry(ids[1])
    assert box.purge(now=clock.now + box.config.retention + DAY) == 3  # final ones
    after = box.metrics()
    assert dict(after.counters) == dict(m.counters)
    assert after.total("accepted") == 5


def test_counters_are_filled_from_an_older_database(
    make_box: Callable[..., Outbox], clock: Clock
) -> None:
    box = make_box()
    ids = [r.id for r in box.accept_batch([reminder(i) for i in range(3)])]
    clock.advance(7)
    box.claim("w", 2)
    box.complete("w", [Delivery(i, Status.SENT, attempt=OK) for i in ids[:2]])

    def seen(m: Metrics) -> dict[str, float]:
        # the histogram's buckets are filled cumulatively but counted one per message:
        # compared as the histogram, the other counters as stored
        buckets = ("latency_le", "latency_in")
        out = {"/".join(k): v for k, v in m.counters.items() if not k[2].startswith(buckets)}
        out.update((f"le {b:g}", n) for b, n in m.latency_buckets())
        return out

    expected = seen(box.metrics())
    with box.transaction() as cur:  # a database from before the counters
        cur.execute("DROP TABLE outbox_counters")
        # a database from before the counters: neither they nor today's schema
        cur.execute("DELETE FROM outbox_meta WHERE key IN ('counters', 'schema_fingerprint')")
    box.init_schema()
    assert seen(box.metrics()) == pytest.approx(expected)
    box.init_schema()  # once only
    assert seen(box.metrics()) == pytest.approx(expected)


def test_a_single_read_sees_committed_rows_and_leaves_transactions_working(
    make_box: Callable[..., Outbox],
) -> None:
    # read(): one statement without a transaction of its own (PostgreSQL: autocommit)
    box, other = make_box(), make_box()
    query = "SELECT message_id FROM outbox_messages WHERE id = ?"
    first = box.accept(reminder(1))
    assert box.read(query, (first.id,)) == [(first.message_id,)]
    second = other.accept(reminder(2))  # committed by another connection
    assert box.read(query, (second.id,)) == [(second.message_id,)]
    with pytest.raises(StorageError):
        box.read("SELECT no_such_column FROM outbox_messages")
    with box.transaction() as cur:  # transactions work after it; a read inside one
        cur.execute("DELETE FROM outbox_counters")
        assert box.read("SELECT COUNT(*) FROM outbox_counters") == [(0,)]  # its own view
        cur.execute("UPDATE outbox_messages SET reason = 'x' WHERE id = ?", [first.id])
    with box.transaction() as cur:
        assert cur.execute(
            "SELECT reason FROM outbox_messages WHERE id = ?", [first.id]
        ).fetchall() == [("x",)]
    assert other.read("SELECT COUNT(*) FROM outbox_counters") == [(0,)]


def test_search_filters_newest_first(box: Outbox) -> None:
    a = box.accept(reminder(1, to="Aino@Example.fi")).id
    b = box.accept(raw_event("domain.nameservers_changed", brand="kustwebb")).id
    c = box.accept(raw_event("domain.renewed")).id
    assert [r.id for r in box.search()] == [c, b, a]
    assert [r.id for r in box.search(brand="acme")] == [c, a]
    assert [r.id for r in box.search(event="domain.renewal_reminder")] == [a]
    assert [r.id for r in box.search(recipient="aino@EXAMPLE.fi", brand="acme")] == [c, a]
    assert [r.id for r in box.search(before=c, limit=1)] == [b]
    assert [r.id for r in box.search(status="held")] == [b]  # kustwebb: DNS unverified, hold
    assert box.search(status="sent") == []


# --- retry schedule (pure) -------------------------------------------------------------------


def test_retry_schedule_defaults() -> None:
    config = OutboxConfig()
    rng = random.Random(1)
    for failures, base in enumerate((5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE), 1):
        for _ in range(50):
            delay = retry_delay(config, failures, rng)
            assert 0.9 * base <= delay <= 1.1 * base
    later = [retry_delay(config, n, rng) for n in range(5, 200)]
    assert all(0.9 * HOUR <= d <= 1.1 * 2 * HOUR for d in later)
    assert max(later) > 1.5 * HOUR > 1.2 * HOUR > min(later)  # spread over 1-2 h
    # a server's "try again in 30 minutes" is honoured
    assert retry_delay(config, 1, rng, retry_after=30 * MINUTE) == 30 * MINUTE


def test_decide_outcomes() -> None:
    config = OutboxConfig()
    rng = random.Random(3)
    claim = Claim(
        1,
        "<m@x>",
        "acme",
        "acme",
        "nordname",
        "e",
        False,
        "b@x",
        "r@y",
        b"",
        0,
        T0,
        T0 + 4 * DAY,
        False,
    )
    assert decide(config, claim, OK, T0, rng).status == Status.SENT
    failed = decide(config, claim, NO_USER, T0, rng)
    assert failed.status == Status.FAILED and failed.suppress
    policy = decide(config, claim, replace(NO_USER, enhanced="5.7.1"), T0, rng)
    assert policy.status == Status.FAILED and not policy.suppress
    later = decide(config, claim, BUSY, T0, rng)
    assert later.status == Status.DEFERRED
    assert later.next_attempt_at is not None and 270 <= later.next_attempt_at - T0 <= 330
    near_end = decide(config, claim, BUSY, T0 + 4 * DAY - 60, rng)
    assert near_end.next_attempt_at == T0 + 4 * DAY  # the last try is at the deadline
    expired = decide(config, claim, BUSY, T0 + 4 * DAY, rng)
    assert expired.status == Status.FAILED and (expired.reason or "").startswith("4.4.7")


def test_config_from_env() -> None:
    config = Settings.load(
        {
            "NOTIFIER_RETRY_DELAYS": "1m, 2m",
            "NOTIFIER_RETRY_INTERVAL": "30m-90m",
            "NOTIFIER_RETRY_JITTER": "0.05",
            "NOTIFIER_MAX_LIFETIME": "5d",
            "NOTIFIER_EVENT_LIFETIMES": "transfer.auth_code=1d",
            "NOTIFIER_LEASE": "20m",
            "NOTIFIER_RETENTION": "3y",
        }
    ).outbox_config()
    assert config.retry_delays == (60.0, 120.0)
    assert config.retry_interval == (1800.0, 5400.0)
    assert config.retry_jitter == 0.05 and config.max_lifetime == 5 * DAY
    assert config.lifetime("transfer.auth_code") == DAY and config.lifetime("x") == 5 * DAY
    assert config.lease == 20 * MINUTE and config.retention == 3 * 365 * DAY
    assert Settings.load({}).outbox_config() == OutboxConfig()
    assert parse_duration("90") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(Exception, match="not a duration"):
        Settings.load({"NOTIFIER_LEASE": "soon"}).outbox_config()


def test_event_lifetime_override(make_box: Callable[..., Outbox]) -> None:
    box = make_box(OutboxConfig(lifetimes={"transfer.auth_code": HOUR}))
    code = box.get(box.accept(raw_event("transfer.auth_code")).id)
    assert code.deadline.timestamp() == T0 + HOUR
    assert box.get(box.accept(reminder(1)).id).deadline.timestamp() == T0 + 4 * DAY


# --- SQLite durability and failure ----------------------------------------------------------


@pytest.fixture
def sqlite_box(tmp_path: Path, key_dir: Path, pipeline: Pipeline, clock: Clock) -> Iterator[Outbox]:
    settings = Settings(var_dir=tmp_path / "var", key_dir=key_dir, secret_key=Secret("t"))
    box = open_box(settings, pipeline, OutboxConfig(busy_timeout=0.05), clock=clock)
    yield box
    box.close()


def test_sqlite_is_wal_with_full_sync(sqlite_box: Outbox, tmp_path: Path) -> None:
    assert str(sqlite_box.pipeline.settings) and sqlite_box.kind == "sqlite"
    conn = sqlite_box._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 50
    assert (tmp_path / "var" / "notifier.db").exists()


def test_sqlite_locked_is_storage_error_and_nothing_is_written(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    blocker = sqlite3.connect(tmp_path / "var" / "notifier.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageError, match="locked") as info:
            sqlite_box.accept_batch([reminder(i) for i in range(5)])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    assert count(sqlite_box) == 0
    assert sqlite_box.accept(reminder(1)).status == Status.QUEUED


def test_sqlite_disk_full_is_storage_error_and_nothing_is_half_written(
    sqlite_box: Outbox,
) -> None:
    sqlite_box.accept(reminder(1))
    conn = sqlite_box._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 3}")  # room for a few rows only
    with pytest.raises(StorageError, match="full"):
        sqlite_box.accept_batch([reminder(i) for i in range(2, 60)])
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert count(sqlite_box) == 1
    assert len(sqlite_box.accept_batch([reminder(i) for i in range(2, 60)])) == 58


def test_unknown_database_url_is_a_config_error(settings: Settings, pipeline: Pipeline) -> None:
    from notifier.errors import ConfigError

    with pytest.raises(ConfigError, match="sqlite:///"):
        open_outbox(settings, url="mysql://x/y")


def test_postgres_unreachable_is_storage_error(settings: Settings, pipeline: Pipeline) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError, match="unavailable") as info:
        open_outbox(settings, url="postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)


def test_message_id_is_unique_on_every_backend(box: Outbox) -> None:
    # the insert path maps returned rows back by Message-ID (issue 9: PostgreSQL lacked it)
    accepted = box.accept(reminder(1))
    columns = (
        "brand, sender_brand, sign_brand, event, mandatory, recipient, language, request_hash, "
        "message_id, mail_from, rcpt_to, data_sha256, status, created_at, updated_at, deadline"
    )
    with pytest.raises(StorageError), box.transaction() as cur:
        cur.execute(
            f"INSERT INTO outbox_messages ({columns}) SELECT {columns} FROM outbox_messages "
            "WHERE id = ?",
            [accepted.id],
        )
    assert box.stats()["total"] == 1


def test_search_reads_a_page_with_its_attempts(box: Outbox, clock: Clock, key_dir: Path) -> None:
    ids = [box.accept(reminder(i)).id for i in range(5)]
    page = box.search(limit=3)
    assert [r.id for r in page] == sorted(ids, reverse=True)[:3]
    assert all(r.attempt_log == () for r in page)
    older = box.search(before=page[-1].id, limit=10)
    assert [r.id for r in older] == sorted(ids, reverse=True)[3:]
