"""The reseller's own pages in the preview, server side: sent mail and domain setup.

Messages are accepted by the API, delivered by the real worker to a real SMTP server on
loopback (which refuses one recipient with 550 5.1.1), on SQLite and on PostgreSQL; the
DNS checks ask a real dnsmasq. The browser tests (``test_preview_browser.py``) drive
the same pages in Chromium.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notifier import events as catalog
from notifier.api import create_app
from notifier.api.preview import sent as sent_pages
from notifier.config import Secret, Settings
from notifier.outbox.model import Status
from notifier.signing.keys import KeyStore
from tests.smtpd import Fault, SMTPTestServer
from tests.test_outbox import db_url, key_dir  # noqa: F401  (fixtures)
from tests.worker.support import run_worker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

HTML = {"Accept": "text/html"}


@dataclass
class Site:
    client: TestClient
    acme: str  # reseller token of acme
    kustwebb: str
    admin: str
    ids: dict[str, int]  # what was sent → message id
    settings: Settings

    @property
    def outbox(self) -> Any:
        return self.client.app.state.store.outbox  # type: ignore[attr-defined]

    def sign_in(self, token: str, lang: str = "en") -> None:
        self.client.cookies.clear()
        form = self.client.get("/preview", headers={"Accept-Language": lang})
        r = self.client.post(
            "/preview/login",
            data={"token": token, "csrf": _csrf(form.text)},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


def _event(brand: str, to: str, domain: str) -> dict[str, Any]:
    """An optional notice (a hard bounce suppresses the address for these)."""
    name = "domain.nameservers_changed"
    return {
        "event": name,
        "brand": brand,
        "recipient": {"email": to, "language": "sv"},
        "data": {**catalog.CATALOG[name].sample, "domain": domain},
    }


class _Box:
    """What ``run_worker`` needs: the outbox the app's store opened."""

    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox


@pytest.fixture(params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    key_dir: Path,  # noqa: F811
    smtp_server_factory: Callable[..., SMTPTestServer],
) -> Iterator[Site]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
        yield from _site(tmp_path, key_dir, url, smtp_server_factory)
        return
    from tests.conftest import postgres_schema

    with postgres_schema() as url:
        yield from _site(tmp_path, key_dir, url, smtp_server_factory)


def _site(
    tmp_path: Path, keys: Path, url: str, smtp_server_factory: Callable[..., SMTPTestServer]
) -> Iterator[Site]:
    settings = Settings(
        var_dir=tmp_path / "var", key_dir=keys, secret_key=Secret("t"), database_url=url
    )
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = app.state.tokens
        acme = tokens.create(["events:write", "messages:read"], brand="acme")[1]
        kustwebb = tokens.create(["events:write", "messages:read"], brand="kustwebb")[1]
        admin = tokens.create(["admin"])[1]
        ids: dict[str, int] = {}
        refusing = smtp_server_factory(Fault("RCPT", "550 5.1.1 No such user here"))
        accepting = smtp_server_factory()
        for key, token, event, server in (
            ("gone", acme, _event("acme", "gone@example.fi", "gone.fi"), refusing),
            ("ok", acme, _event("acme", "aino@example.fi", "aino.fi"), accepting),
            ("other", kustwebb, _event("kustwebb", "kalle@example.se", "kalle.se"), accepting),
        ):
            r = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 202, r.text
            ids[key] = r.json()["id"]
            run_worker(_Box(app.state.store.outbox), keys, server.url)
        yield Site(client, acme, kustwebb, admin, ids, settings)


def _ids_on(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]


def test_sent_mail_shows_the_resellers_own_messages_only(site: Site) -> None:
    site.sign_in(site.acme)
    c = site.client
    r = c.get("/preview/brands/acme/sent")
    assert r.status_code == 200
    assert sorted(_ids_on(r.text)) == sorted([site.ids["ok"], site.ids["gone"]])
    assert "kalle@example.se" not in r.text
    other = site.ids["other"]
    # another brand's list, message and bytes do not exist for this reseller
    for url in (
        "/preview/brands/kustwebb/sent",
        f"/preview/brands/kustwebb/sent/{other}",
        f"/preview/brands/kustwebb/sent/{other}/eml",
        f"/preview/brands/acme/sent/{other}",  # its id under the reseller's own brand
        f"/preview/brands/acme/sent/{other}/eml",
    ):
        got = c.get(url, headers=HTML)
        assert got.status_code == 404, url
        assert "kalle" not in got.text
    # every search stays inside the brand
    assert _ids_on(c.get("/preview/brands/acme/sent?recipient=kalle@example.se").text) == []
    assert _ids_on(c.get("/preview/brands/acme/sent?domain=kalle.se").text) == []
    # an admin sees the other brand's mail
    site.sign_in(site.admin)
    assert _ids_on(c.get("/preview/brands/kustwebb/sent").text) == [other]
    assert c.get(f"/preview/brands/kustwebb/sent/{other}").status_code == 200


def test_sent_mail_search_by_recipient_domain_event_and_state(site: Site) -> None:
    site.sign_in(site.acme)
    c = site.client
    ok, gone = site.ids["ok"], site.ids["gone"]

    def ids(query: str) -> list[int]:
        r = c.get(f"/preview/brands/acme/sent?{query}")
        assert r.status_code == 200, r.text
        return _ids_on(r.text)

    assert ids("recipient=AINO@example.fi") == [ok]  # as stored: lower case
    assert ids("domain=gone.fi") == [gone]
    assert ids("domain=GONE.FI.") == [gone]
    assert ids("state=failed") == [gone]
    assert ids("state=sent") == [ok]
    assert ids("event=domain.nameservers_changed&state=sent") == [ok]
    assert ids("event=domain.renewal_reminder") == []
    assert "No messages match." in c.get("/preview/brands/acme/sent?state=held").text
    # bad search values: 422 with the field named, the list not searched
    r = c.get("/preview/brands/acme/sent?recipient=aino&domain=-bad-&state=lost&event=nope")
    assert r.status_code == 422
    for field in ("recipient", "domain", "state", "event"):
        assert f'id="s-{field}"' in r.text
        assert re.search(rf'id="s-{field}"[^>]*aria-invalid="true"', r.text), field
    assert _ids_on(r.text) == []


def test_sent_mail_pages(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sent_pages, "PAGE_SIZE", 1)
    site.sign_in(site.acme)
    c = site.client
    first = c.get("/preview/brands/acme/sent?event=domain.nameservers_changed")
    assert _ids_on(first.text) == [site.ids["ok"]]  # newest first
    older = re.search(r'href="([^"]+)" id="older"', first.text)
    assert older and "event=domain.nameservers_changed" in older.group(1)
    second = c.get(older.group(1).replace("&amp;", "&"))
    assert _ids_on(second.text) == [site.ids["gone"]]
    assert 'id="older"' not in second.text and 'id="newest"' in second.text


def test_sent_message_attempts_replies_bounce_and_exact_bytes(site: Site) -> None:
    site.sign_in(site.acme, lang="fi")
    c = site.client
    gone = site.ids["gone"]
    r = c.get(f"/preview/brands/acme/sent/{gone}", headers={"Accept-Language": "fi"})
    assert r.status_code == 200
    assert "Epäonnistui" in r.text  # the state, in Finnish
    assert 'id="feedback"' in r.text and "550 5.1.1 No such user here" in r.text
    assert 'id="attempts"' in r.text and "Pysyvä virhe" in r.text
    assert 'lang="sv"' in r.text  # the mail's parts are marked with its language
    assert "estolistalla" not in r.text  # failed, not a message that was never sent

    ok = site.ids["ok"]
    r = c.get(f"/preview/brands/acme/sent/{ok}")
    assert "Accepted by the server" in r.text and "250" in r.text
    assert 'id="no-feedback"' in r.text
    eml = c.get(f"/preview/brands/acme/sent/{ok}/eml")
    assert eml.status_code == 200
    assert eml.headers["content-type"].startswith("message/rfc822")
    assert "attachment" in eml.headers["content-disposition"]
    record = site.outbox.get(ok)
    assert record.status == Status.SENT
    assert eml.content == site.outbox.raw(ok).data
    assert hashlib.sha256(eml.content).hexdigest() == record.sent_sha256
    parsed = email.message_from_bytes(eml.content, policy=email.policy.default)
    assert parsed["DKIM-Signature"] is not None  # the signed bytes, as sent
    assert parsed["Message-ID"] == record.message_id


def test_a_blocked_address_shows_in_the_feedback(site: Site) -> None:
    """A second optional message to the address that bounced is never sent."""
    r = site.client.post(
        "/v1/events",
        json=_event("acme", "gone@example.fi", "gone2.fi"),
        headers={"Authorization": f"Bearer {site.acme}"},
    )
    assert r.json()["status"] == "suppressed"
    site.sign_in(site.acme)
    page = site.client.get(f"/preview/brands/acme/sent/{r.json()['id']}").text
    assert "suppression list" in page and 'id="no-attempts"' in page
    assert 'class="fb-suppressed"' in page


# --- domain setup ---------------------------------------------------------------------


@pytest.fixture
def dns_site(
    tmp_path: Path,
    key_dir: Path,  # noqa: F811
    dnsmasq: Callable[..., str],
) -> Iterator[Site]:
    keys = KeyStore(key_dir)
    from notifier.brands import BrandRegistry

    settings = Settings(var_dir=tmp_path / "var", key_dir=key_dir, secret_key=Secret("t"))
    acme = BrandRegistry(settings.brands_dir, settings.platform_brand).get("acme")
    record = keys.load("acme", acme.dkim[0].name).dns_record(acme.mail_domain)
    value = record.value
    nameserver = dnsmasq(
        "--local=/acme.fi/",
        "--txt-record=" + record.name + "," + ",".join(record.strings),
        "--txt-record=bounce.acme.fi,v=spf1 include:_spf.nordname.com -all",
        # no DMARC record, and the link domain points elsewhere
        "--host-record=elsewhere.test,192.0.2.1",
        "--cname=domain.acme.fi,elsewhere.test",
    )
    assert value
    settings = settings.model_copy(update={"dns_nameserver": nameserver})
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = app.state.tokens
        yield Site(
            client,
            tokens.create(["messages:read"], brand="acme")[1],
            tokens.create(["messages:read"], brand="kustwebb")[1],
            tokens.create(["admin"])[1],
            {},
            settings,
        )


def test_domain_setup_lists_the_records_to_publish(dns_site: Site) -> None:
    dns_site.sign_in(dns_site.acme, lang="sv")
    r = dns_site.client.get("/preview/brands/acme/domain", headers={"Accept-Language": "sv"})
    assert r.status_code == 200 and "Domäninställningar" in r.text
    key = KeyStore(dns_site.settings.keys_path).load("acme", "acme2026a")
    values = dict(re.findall(r'<textarea id="rec-([\w-]+)-value"[^>]*>([^<]*)</textarea>', r.text))
    names = dict(re.findall(r'<input id="rec-([\w-]+)-name"[^>]*value="([^"]*)"', r.text))
    assert names["dkim-acme2026a"] == "acme2026a._domainkey.acme.fi"
    assert values["dkim-acme2026a"] == key.public_value
    assert names["spf"] == "bounce.acme.fi"
    assert values["spf"] == "v=spf1 include:_spf.nordname.com -all"
    assert names["dmarc"] == "_dmarc.acme.fi"
    assert values["dmarc"].startswith("v=DMARC1; p=none")
    assert (names["link"], values["link"]) == ("domain.acme.fi", "links.nordname.com")
    assert "Inte kontrollerad ännu" in r.text
    # the copy script may run on this page only
    assert "script-src 'self'" in r.headers["content-security-policy"]
    preview = dns_site.client.get("/preview/brands/acme")
    assert "script-src 'none'" in preview.headers["content-security-policy"]
    js = dns_site.client.get("/preview/static/copy.js")
    assert js.status_code == 200 and "clipboard" in js.text
    # another brand's setup does not exist for this reseller
    assert dns_site.client.get("/preview/brands/kustwebb/domain", headers=HTML).status_code == 404


def test_check_now_runs_the_dns_checks_and_shows_each_status(dns_site: Site) -> None:
    dns_site.sign_in(dns_site.acme)
    c = dns_site.client
    page = c.get("/preview/brands/acme/domain").text
    # CSRF-protected like every preview form
    assert c.post("/preview/brands/acme/domain/check", data={}, headers=HTML).status_code == 403
    r = c.post(
        "/preview/brands/acme/domain/check", data={"csrf": _csrf(page)}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/preview/brands/acme/domain#dns-status"
    page = c.get("/preview/brands/acme/domain").text
    assert 'id="checked-at"' in page

    def status(rid: str) -> str:
        m = re.search(rf'id="rec-{rid}-status">.*?class="st st-(\w+)"', page, re.S)
        assert m, rid
        return m.group(1)

    assert status("dkim-acme2026a") == "ok"
    assert status("spf") == "ok"
    assert status("dmarc") == "fail"
    assert status("link") == "fail"
    assert "CNAME elsewhere.test" in page  # what is published now
    # recorded like the workers' checks: the stored state is what the page shows, and
    # what every process's sender decision follows
    stored = dns_site.outbox.brand_dns("acme")
    assert stored is not None and stored.outcome == "fail" and stored.state == "unverified"
    assert {r["id"]: r["status"] for r in stored.records}["link"] == "fail"
    # a reseller cannot run checks for another brand
    r = c.post("/preview/brands/kustwebb/domain/check", data={"csrf": _csrf(page)}, headers=HTML)
    assert r.status_code == 404


def test_check_now_is_rate_limited(dns_site: Site) -> None:
    dns_site.sign_in(dns_site.acme)
    c = dns_site.client
    limiter = c.app.state.preview.check_limiter  # type: ignore[attr-defined]
    for _ in range(limiter.limit):
        assert limiter.hit("acme") == 0
    csrf = _csrf(c.get("/preview/brands/acme/domain").text)
    r = c.post("/preview/brands/acme/domain/check", data={"csrf": csrf})
    assert r.status_code == 429 and 'id="flash"' in r.text
