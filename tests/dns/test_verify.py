"""DNS verification that runs itself: checks against a real dnsmasq whose records change
between checks, recorded in SQLite and PostgreSQL, followed by intake and the worker
without a restart."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from notifier.compose.pipeline import Pipeline
from notifier.config import Settings
from notifier.dns.verify import DnsView, Verifier, outcome_of
from notifier.outbox import Outbox, Status, open_outbox
from notifier.outbox.brand_dns import HISTORY, next_state
from notifier.signing.identity import dkim_identity
from tests.conftest import Box, open_box, postgres_schema
from tests.conftest_dns import _servfail, _udp_server
from tests.dns.support import World
from tests.smtpd import SMTPTestServer
from tests.test_outbox import raw_event
from tests.worker.support import run_worker


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with postgres_schema("dns") as url:
        yield url


@pytest.fixture
def settings_(world: World, db_url: str) -> Settings:
    return world.settings(database_url=db_url)


@pytest.fixture
def box(settings_: Settings) -> Iterator[Box]:
    pipeline = Pipeline(settings_)
    with open_box(settings_, pipeline) as b:
        yield b


def verifier(box: Box, settings: Settings, **kw: Any) -> Verifier:
    return Verifier(settings, box.pipeline.brands, box.outbox, **kw)


def follow(box: Box) -> DnsView:
    """This process's pipeline following the stored state, as ``notifier serve`` does."""
    return DnsView(box.outbox, 0.0, on_change=box.pipeline.observe_dns)


def events(outbox: Outbox) -> list[dict[str, Any]]:
    with outbox.transaction(write=False) as cur:
        rows = cur.execute("SELECT type, brand, data FROM outbox_events ORDER BY id").fetchall()
    return [{"type": t, "brand": b, **json.loads(d)} for t, b, d in rows]


def signer_of(data: bytes) -> str | None:
    return dkim_identity(data.split(b"\r\n\r\n")[0] + b"\r\n\r\n")[0]


def from_domain(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    return str(message["From"].addresses[0].domain)


# --- the state machine ----------------------------------------------------------------


def test_state_machine() -> None:
    assert next_state("unverified", 0, "ok") == ("verified", 0)
    assert next_state("unverified", 3, "fail") == ("unverified", 4)
    assert next_state("verified", 0, "fail") == ("broken-pending", 1)
    assert next_state("broken-pending", 1, "fail") == ("unverified", 2)
    assert next_state("broken-pending", 1, "ok") == ("verified", 0)
    for state in ("unverified", "verified", "broken-pending"):
        assert next_state(state, 1, "unknown") == (state, 1)  # type: ignore[arg-type]


# --- the flows, with real DNS -----------------------------------------------------------


def test_verified_releases_held_mail_and_signs_as_the_brand_from_the_next_message(
    world: World, settings_: Settings, box: Box, smtp_server: SMTPTestServer
) -> None:
    # kustwebb: unverified_policy = "hold"; its DKIM record is not published yet
    world.publish(kustwebb={"dkim": False})
    view = follow(box)
    held = box.accept(raw_event("domain.nameservers_changed", brand="kustwebb"))
    assert held.status == Status.HELD
    v = verifier(box, settings_)
    checks, first = v.check_and_record(world.brand("kustwebb"), source="test")
    assert outcome_of(checks) == "fail" and first.now.state == "unverified"
    assert not first.changed and events(box.outbox) == []
    assert box.get(held.id).status == Status.HELD

    world.publish(kustwebb={})  # the reseller publishes its key
    checks, recorded = v.check_and_record(world.brand("kustwebb"), source="test")
    assert outcome_of(checks) == "ok"
    assert (recorded.previous, recorded.now.state, recorded.released) == (
        "unverified",
        "verified",
        1,
    )
    assert box.get(held.id).status == Status.QUEUED  # in the same transaction
    [event] = events(box.outbox)
    assert event["type"] == "brand.dns_changed" and event["brand"] == "kustwebb"
    assert (event["from"], event["to"], event["verified"]) == ("unverified", "verified", True)
    assert {r["id"] for r in event["records"]} >= {"dkim:kw2026", "spf", "dmarc", "link"}
    assert event["checked_at"] == recorded.now.checked_at.isoformat()  # type: ignore[union-attr]

    # the next message of this process: not held, from the brand's own domain
    view.refresh()
    after = box.accept(
        raw_event("domain.nameservers_changed", brand="kustwebb", domain="toinen.fi")
    )
    assert after.status == Status.QUEUED and not after.duplicate
    assert box.get(after.id).sign_brand == "kustwebb"

    stats = run_worker(box, world.key_dir, smtp_server.url)
    assert stats.sent == 2
    signers = {signer_of(m.data) for m in smtp_server.messages}
    assert signers == {"kustwebb.fi"}
    assert {from_domain(m.data) for m in smtp_server.messages} == {"kustwebb.fi"}


def test_two_failing_checks_fall_back_one_does_not_and_unknown_never_counts(
    world: World, settings_: Settings, box: Box, smtp_server: SMTPTestServer
) -> None:
    acme = world.brand("acme")  # unverified_policy = "platform"
    world.publish(acme={})
    view = follow(box)
    v = verifier(box, settings_)
    assert v.check_and_record(acme, source="test")[1].now.state == "verified"
    view.refresh()
    own = box.accept(raw_event(brand="acme", days_left=30))
    assert box.get(own.id).sign_brand == "acme"  # composed for acme.fi

    world.publish(acme={"dkim": False})  # the reseller deleted its DKIM record
    first = v.check_and_record(acme, source="test")[1]
    assert (first.now.state, first.now.failures, first.now.verified) == ("broken-pending", 1, True)
    view.refresh()
    still = box.accept(raw_event(brand="acme", days_left=31))
    assert box.get(still.id).sign_brand == "acme"  # one failing check: no fallback

    # a nameserver that never answers, then one that answers SERVFAIL: unknown, no count
    for bad in (_udp_server(lambda _q: None), _udp_server(_servfail)):
        ns = next(bad)
        checks, rec = verifier(box, settings_, nameserver=ns, timeout=0.5).check_and_record(
            acme, source="test"
        )
        bad.close()
        assert outcome_of(checks) == "unknown"
        assert (rec.now.state, rec.now.failures, rec.changed) == ("broken-pending", 1, False)

    second = v.check_and_record(acme, source="test")[1]
    assert (second.previous, second.now.state, second.now.verified) == (
        "broken-pending",
        "unverified",
        False,
    )
    transitions = [(e["from"], e["to"]) for e in events(box.outbox)]
    assert transitions == [
        ("unverified", "verified"),
        ("verified", "broken-pending"),
        ("broken-pending", "unverified"),
    ]
    view.refresh()
    fallen = box.accept(raw_event(brand="acme", days_left=32))
    assert box.get(fallen.id).sign_brand == "nordname"  # policy platform from now on

    # queued mail composed for acme.fi is signed with the platform key now (Postal's way)
    assert run_worker(box, world.key_dir, smtp_server.url).sent == 3
    assert {signer_of(m.data) for m in smtp_server.messages} == {"nordname.com"}
    assert {from_domain(m.data) for m in smtp_server.messages} == {"acme.fi", "nordname.com"}
    assert box.get(own.id).dkim_domain == "nordname.com"

    history = box.outbox.brand_dns_history("acme")
    assert [h.outcome for h in history] == ["fail", "unknown", "unknown", "fail", "ok"]
    stored = box.outbox.brand_dns("acme")
    assert stored is not None and stored.state == "unverified"
    assert {r["id"]: r["status"] for r in stored.records}["dkim:acme2026a"] == "fail"


def test_fallen_back_brand_signs_as_itself_again_once_fixed(
    world: World, settings_: Settings, box: Box, smtp_server: SMTPTestServer
) -> None:
    acme = world.brand("acme")
    world.publish(acme={})
    v = verifier(box, settings_)
    v.check_and_record(acme, source="test")
    follow(box).refresh()
    queued = box.accept(raw_event(brand="acme", days_left=40))
    world.publish(acme={"spf": "v=spf1 mx -all"})  # SPF no longer includes the platform
    v.check_and_record(acme, source="test")
    assert v.check_and_record(acme, source="test")[1].now.state == "unverified"
    world.publish(acme={})
    assert v.check_and_record(acme, source="test")[1].now.state == "verified"
    assert run_worker(box, world.key_dir, smtp_server.url).sent == 1
    assert box.get(queued.id).dkim_domain == "acme.fi"


def test_dns_verified_in_the_brand_file_is_the_state_before_the_first_check(
    world: World, db_url: str
) -> None:
    path = world.brands_dir / "acme.toml"
    text = path.read_text()
    path.write_text(
        text.replace(
            'unverified_policy = "platform"\n',
            'unverified_policy = "platform"\ndns_verified = true\n',
        )
    )
    settings = world.settings(database_url=db_url)
    with open_box(settings, Pipeline(settings)) as box:
        acme = box.pipeline.brands.get("acme")
        # never checked: the file says verified, so acme sends as itself
        assert box.get(box.accept(raw_event(brand="acme")).id).sign_brand == "acme"
        world.publish(acme={"dkim": False})
        v = verifier(box, settings)
        assert v.check_and_record(acme, source="test")[1].now.state == "broken-pending"
        assert v.check_and_record(acme, source="test")[1].now.state == "unverified"
        follow(box).refresh()
        later = box.accept(raw_event(brand="acme", days_left=9))
        assert box.get(later.id).sign_brand == "nordname"  # observed beats declared


# --- storage ------------------------------------------------------------------------------


def test_history_is_bounded_and_unknown_does_not_move_anything(settings_: Settings) -> None:
    with open_outbox(settings_) as outbox:
        for i in range(HISTORY + 5):
            outbox.record_dns_check(
                "acme",
                "unknown" if i % 2 else "ok",
                [{"id": "spf", "status": "ok", "n": i}],
                initial="unverified",
                next_check_in=3600,
                source="test",
            )
        history = outbox.brand_dns_history("acme", limit=1000)
        assert len(history) == HISTORY
        assert history[0].records == [{"id": "spf", "status": "ok", "n": HISTORY + 4}]
        state = outbox.brand_dns("acme")
        assert state is not None and (state.state, state.failures) == ("verified", 0)
        assert [(e["from"], e["to"]) for e in events(outbox)] == [("unverified", "verified")]
        assert outbox.brand_dns("kustwebb") is None


def test_one_of_two_workers_claims_a_brand_per_period(settings_: Settings) -> None:
    now = [1_800_000_000.0]
    brands = [f"b{i:02d}" for i in range(30)]
    with (
        open_outbox(settings_, clock=lambda: now[0]) as one,
        open_outbox(settings_, clock=lambda: now[0]) as two,
    ):
        got: dict[str, list[str]] = {}
        barrier = threading.Barrier(2)

        def claim(name: str, outbox: Outbox) -> None:
            barrier.wait()
            got[name] = outbox.claim_dns_checks(name, brands, lease=600, limit=100)

        threads = [
            threading.Thread(target=claim, args=(n, o)) for n, o in (("w1", one), ("w2", two))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got["w1"] + got["w2"]) == brands  # each brand once
        for brand in brands:
            owner = "w1" if brand in got["w1"] else "w2"
            one.record_dns_check(
                brand, "ok", [], initial="unverified", next_check_in=3600, source=owner, owner=owner
            )
        now[0] += 1800
        assert two.claim_dns_checks("w2", brands, lease=600) == []  # checked this period
        now[0] += 1801
        assert len(one.claim_dns_checks("w1", brands, lease=600, limit=100)) == 30
        assert two.claim_dns_checks("w2", brands, lease=600) == []  # leased to w1
