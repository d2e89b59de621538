"""The preview page in a real headless Chromium, against ``notifier serve`` on loopback.

Signs in with a reseller token, follows the browser's Accept-Language, switches the
mail language, checks that the sandboxed iframe shows the brand's mail and that a
script a tenant template smuggles into the HTML does not run, sends a test to the
brand's test address and finds it among the captured mail. Screenshots go to the
test's tmp directory.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package;
skipped without them unless ``NOTIFIER_TEST_REQUIRE_BROWSER=1`` (CI), where that fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from notifier.api.store import open_store
from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.events import CATALOG
from notifier.signing.keys import KeyStore
from notifier.tokens import TokenStore
from tests.conftest_smtp import DNSMASQ, _dns_ready, _stop, free_port

from .conftest import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUIRED = os.environ.get("NOTIFIER_TEST_REQUIRE_BROWSER") == "1"

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - reported by the skip below
    webdriver = None  # type: ignore[assignment]

_missing = [
    what
    for what, ok in (
        ("selenium", webdriver is not None),
        ("chromium", Path(CHROMIUM).exists()),
        ("chromium-driver", Path(CHROMEDRIVER).exists()),
    )
    if not ok
]
if _missing and REQUIRED:  # pragma: no cover
    raise RuntimeError(f"browser test required but missing: {', '.join(_missing)}")
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"missing: {', '.join(_missing)}")

SCRIPTED = """name = "Skriptikoe"
legal_name = "Skriptikoe Oy"
address = ["Testikatu 1", "00100 Helsinki"]
from_address = "posti@skriptikoe.fi"
link_domain = "linkit.skriptikoe.fi"
test_address = "testi@skriptikoe.fi"
logo_url = "https://linkit.skriptikoe.fi/logo.png"
default_language = "en"
languages = ["en", "fi"]

[support]
email = "tuki@skriptikoe.fi"
"""

#: what a hostile reseller template might try; none of it may run in the preview
PAYLOAD = (
    '\n\n<script>document.documentElement.setAttribute("data-script-ran", "yes");'
    "parent.document.title = 'pwned';</script>"
    '<img alt="" src="data:," onerror="document.documentElement.setAttribute('
    "'data-onerror-ran', 'yes')\">\n\n"
)


@dataclass
class Server:
    url: str
    reseller: str  # token bound to acme
    admin: str
    settings: Settings
    sent: dict[str, int]  # brand → the id of a message sent for it (over the API)


def _dnsmasq(root: Path, *records: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A real dnsmasq on loopback for the module (the ``dnsmasq`` fixture is per test)."""
    if DNSMASQ is None:
        pytest.fail("dnsmasq not installed (Debian package dnsmasq-base)")
    for _ in range(5):
        port = free_port(socket.SOCK_DGRAM)
        out = (root / f"dnsmasq-{port}.log").open("wb")
        proc = subprocess.Popen(
            [
                str(DNSMASQ),
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                f"--port={port}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local=/test/",
                *records,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        if _dns_ready(port, proc):
            return f"127.0.0.1:{port}", proc
        _stop(proc)
    pytest.fail("dnsmasq did not start")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    brands = root / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    (brands / "skriptikoe.toml").write_text(SCRIPTED, "utf-8")
    override = brands / "skriptikoe" / "templates" / "en"
    override.mkdir(parents=True)
    template = (PROJECT_ROOT / "templates" / "en" / "domain.renewal_reminder.jinja").read_text()
    override.joinpath("domain.renewal_reminder.jinja").write_text(
        template.replace("{% block body %}", "{% block body %}" + PAYLOAD, 1), "utf-8"
    )
    settings = Settings(var_dir=root / "var", brands_dir=brands, secret_key=Secret("browser"))
    registry = BrandRegistry(brands, settings.platform_brand)
    platform = registry.platform
    selector = platform.active_selector()
    assert selector is not None
    KeyStore(settings.keys_path).generate(platform, selector.name, bits=2048)
    acme = registry.get("acme")
    KeyStore(settings.keys_path).generate(acme, acme.dkim[0].name, bits=2048)
    dkim = KeyStore(settings.keys_path).load("acme", acme.dkim[0].name).dns_record("acme.fi")
    nameserver, dns_proc = _dnsmasq(
        root,
        "--local=/acme.fi/",
        f"--txt-record={dkim.name}," + ",".join(dkim.strings),
        "--txt-record=bounce.acme.fi,v=spf1 include:_spf.nordname.com -all",
        "--txt-record=_dmarc.acme.fi,v=DMARC1; p=none",
    )
    store = open_store(settings, Pipeline(settings))
    tokens = TokenStore(store)
    reseller = tokens.create(["messages:read"], brand="acme", label="browser test")[1]
    admin = tokens.create(["admin"], label="browser test")[1]
    writers = {
        b: tokens.create(["events:write", "messages:read"], brand=b, label="browser test")[1]
        for b in ("acme", "kustwebb")
    }
    store.outbox.close()  # type: ignore[attr-defined]

    env = {
        "NOTIFIER_VAR_DIR": str(settings.var_dir),
        "NOTIFIER_BRANDS_DIR": str(brands),
        "NOTIFIER_SECRET_KEY": "browser",
        "NOTIFIER_CONFIG": str(root / "absent.toml"),
        "NOTIFIER_DNS_NAMESERVER": nameserver,
    }
    try:
        with serving(root, env) as url:
            sent = {b: _send(url, token, b) for b, token in writers.items()}
            yield Server(url, reseller, admin, settings, sent)
    finally:
        _stop(dns_proc)


def _send(url: str, token: str, brand: str) -> int:
    """An event over the API, delivered by the server's own worker (mail captured) or
    held by its brand's policy."""
    name = "domain.nameservers_changed"
    event = {
        "event": name,
        "brand": brand,
        "recipient": {"email": f"holder@{brand}-customer.fi", "language": "sv"},
        "data": {**CATALOG[name].sample, "domain": f"{brand}-customer.fi"},
    }
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{url}/v1/events", json=event, headers=auth, timeout=30)
    assert r.status_code == 202, r.text
    message_id = int(r.json()["id"])
    for _ in range(300):
        doc = httpx.get(f"{url}/v1/messages/{message_id}", headers=auth, timeout=30)
        if doc.status_code == 200 and doc.json()["status"] in ("sent", "held"):
            return message_id  # (kustwebb holds mail until its DNS is verified)
        time.sleep(0.1)
    pytest.fail(f"message {message_id} was never sent")


def _chromium(profile: Path, accept_language: str) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = _chromium(tmp_path / "chromium-profile", "sv-FI,sv,en")
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any) -> Any:
    return WebDriverWait(driver, 30, poll_frequency=0.1).until(condition)


def _load(driver: Any, element: Any, element_id: str) -> None:
    """Click ``element``, which loads a new page, and wait for that page's ``element_id``:
    waiting for the id alone returns at once when the old page has it too, and the next
    look at the page then finds the old document gone. A new document has a new
    ``performance.timeOrigin``; while the old one is torn down the driver answers with
    errors of several kinds (stale element, a node "not in the document"), hence they
    are ignored until then."""
    before = driver.execute_script("return performance.timeOrigin")
    element.click()
    WebDriverWait(driver, 30, poll_frequency=0.1, ignored_exceptions=(WebDriverException,)).until(
        lambda d: (
            d.execute_script("return performance.timeOrigin") != before
            and d.find_elements(By.ID, element_id)
        )
    )


def _sign_in(driver: Any, server: Server, token: str) -> None:
    driver.get(f"{server.url}/preview")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "sign-out"))


def _click(driver: Any, element_id: str, then_url: str) -> None:
    driver.find_element(By.ID, element_id).click()
    _wait(driver, lambda d: then_url in d.current_url)


def _in_mail(driver: Any) -> tuple[str, str]:
    """(html lang, visible text) of the mail in the sandboxed iframe."""
    frame = driver.find_element(By.ID, "mail-html")
    assert frame.get_attribute("sandbox") == ""
    driver.switch_to.frame(frame)
    try:
        lang = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
        text = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.switch_to.default_content()
    return lang, text


def test_reseller_previews_its_mail_in_a_real_browser(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    _sign_in(browser, server, server.reseller)
    assert browser.current_url == f"{server.url}/preview/brands/acme"
    # the page speaks the browser's language (Swedish)
    assert "Förhandsgranskning av e-post" in browser.title
    assert "E-post till domäninnehavare" in browser.page_source
    cookie = browser.get_cookie("notifier_preview")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

    # events are named by their Swedish titles, not by their ids
    link = browser.find_element(By.CSS_SELECTOR, 'a[href*="event=domain.renewal_reminder"]')
    assert link.text == "Påminnelse om förnyelse"
    nav = browser.find_element(By.CSS_SELECTOR, "nav.event-list").text
    assert "Betalningspåminnelse" in nav and not [n for n in CATALOG if n in nav]
    link.click()
    _wait(browser, lambda d: "event=domain.renewal_reminder" in d.current_url)
    assert browser.find_element(By.ID, "event-name").text == "Påminnelse om förnyelse"
    lang, text = _in_mail(browser)
    assert lang == "fi"  # Acme writes Finnish by default
    assert "Acme Digital" in text

    _click(browser, "lang-sv", "lang=sv")
    lang, text = _in_mail(browser)
    assert lang == "sv" and "Acme Digital" in text
    assert "förnya" in browser.find_element(By.ID, "h-subject").text.lower()
    assert "Acme Digital" in browser.find_element(By.ID, "h-from").text
    assert "tuki@acme.fi" in browser.find_element(By.ID, "h-reply-to").text

    _click(browser, "lang-en", "lang=en")
    lang, text = _in_mail(browser)
    assert lang == "en" and "Acme Digital" in text
    assert browser.find_element(By.ID, "lang-en").get_attribute("aria-current") == "true"
    browser.save_screenshot(str(tmp_path / "preview-acme-en.png"))
    assert (tmp_path / "preview-acme-en.png").stat().st_size > 10_000

    # "send me a test": queued, delivered by the in-process worker, captured
    browser.find_element(By.ID, "send-test").click()
    flash = _wait(browser, lambda d: d.find_elements(By.ID, "flash"))
    assert "testi@acme.fi" in flash[0].text
    for _ in range(100):
        browser.get(f"{server.url}/preview/mail")
        rows = browser.find_elements(By.CSS_SELECTOR, "#captured tbody tr")
        if rows:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the test message never reached the captured mail")
    assert "testi@acme.fi" in rows[0].text
    rows[0].find_element(By.TAG_NAME, "a").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "mail-html"))
    _, text = _in_mail(browser)
    assert "Acme Digital" in text
    browser.save_screenshot(str(tmp_path / "captured-mail.png"))


def test_unsubscribe_page_speaks_the_mail_language_in_a_real_browser(
    server: Server, browser: Any
) -> None:
    # the browser asks for Swedish; the link came in Acme's Finnish mail
    pipeline = Pipeline(server.settings)
    mail = pipeline.compose(pipeline.sample("domain.renewed", "acme", "fi")).rendered
    assert mail.language == "fi" and mail.unsubscribe_url
    path = urlsplit(mail.unsubscribe_url).path
    browser.get(f"{server.url}{path}")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fi"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Peru tilaus" in body and "Avsluta" not in body
    assert _axe(browser) == []


def test_no_script_runs_in_the_previewed_mail(server: Server, browser: Any, tmp_path: Path) -> None:
    _sign_in(browser, server, server.admin)
    browser.get(f"{server.url}/preview/brands/skriptikoe?event=domain.renewal_reminder&lang=en")
    frame = browser.find_element(By.ID, "mail-html")
    assert "allow-scripts" not in (frame.get_attribute("sandbox") or "")
    browser.switch_to.frame(frame)
    try:
        root = browser.find_element(By.TAG_NAME, "html")
        # the tenant's script reached the mail's HTML ...
        assert browser.find_elements(By.TAG_NAME, "script")
        assert "Skriptikoe" in browser.find_element(By.TAG_NAME, "body").text
        # ... and did not run, nor did the inline event handler
        assert root.get_attribute("data-script-ran") is None
        assert root.get_attribute("data-onerror-ran") is None
    finally:
        browser.switch_to.default_content()
    assert browser.title != "pwned"
    assert browser.find_element(By.ID, "h-from").text.startswith("Skriptikoe")
    browser.save_screenshot(str(tmp_path / "preview-scripted.png"))
    # control: the same HTML outside the sandbox does run its script, so the checks
    # above are not vacuous
    mail_html = frame.get_attribute("srcdoc")
    assert "<script>" in mail_html
    browser.get("data:text/html;base64," + base64.b64encode(mail_html.encode()).decode())
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("data-script-ran"))


def test_docs_render_from_the_app_alone(server: Server, browser: Any, tmp_path: Path) -> None:
    """``/docs`` in a real browser: Swagger UI draws every operation, and every file
    the page loaded came from the app (no CDN: the page works with no network)."""
    browser.get(f"{server.url}/docs")
    blocks = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary"))
    assert len(blocks) >= 10
    assert "post_event" in browser.page_source or "/v1/events" in browser.page_source
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in loaded), loaded
    assert any(u.endswith("/openapi.json") for u in loaded), loaded
    outside = [u for u in loaded if not u.startswith(server.url) and not u.startswith("data:")]
    assert outside == []
    browser.save_screenshot(str(tmp_path / "docs.png"))


# --- sent mail, domain setup, keyboard and axe-core ------------------------------------

AXE = Path(
    os.environ.get("NOTIFIER_TEST_AXE")
    or PROJECT_ROOT / ".venv-tools" / "axe-core-4.10.3" / "axe.min.js"
)
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {
  runOnly: {type: 'tag', values: arguments[0]},
  resultTypes: ['violations'],
  iframes: false,
}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => n.target.join(' ') + ' | ' + (n.failureSummary || '')),
})))).catch(e => done([{id: 'axe-error', impact: 'error', help: String(e), nodes: []}]));
"""


def _axe(driver: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page now (the previewed mail's own
    document, in its script-less sandbox, is the brand's template, not the page)."""
    if not AXE.is_file():
        message = f"axe-core not found at {AXE} (scripts/test fetches it from npm)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    driver.execute_script(AXE.read_text("utf-8"))
    violations: list[dict[str, Any]] = driver.execute_async_script(AXE_RUN, WCAG_TAGS)
    return violations


def _active_id(driver: Any) -> str:
    return str(driver.execute_script("return document.activeElement && document.activeElement.id"))


def _tab(driver: Any) -> str:
    ActionChains(driver).send_keys(Keys.TAB).perform()
    return _active_id(driver)


@pytest.mark.parametrize("ui", ["en", "fi", "sv"])
def test_axe_finds_no_violation_on_any_preview_page(
    server: Server, tmp_path: Path, ui: str
) -> None:
    driver = _chromium(tmp_path / "profile", ui)
    found: dict[str, list[dict[str, Any]]] = {}

    def audit(name: str) -> None:
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == ui, name
        found[name] = _axe(driver)

    try:
        driver.get(f"{server.url}/preview")
        audit("sign-in")
        _sign_in(driver, server, server.reseller)
        audit("preview")
        driver.get(f"{server.url}/preview/brands/acme?event=domain.renewal_reminder&lang=sv")
        audit("preview sv mail")
        _load(driver, driver.find_element(By.ID, "update"), "lang-en")
        audit("preview edited (form)")
        driver.find_element(By.ID, "data").clear()
        driver.find_element(By.ID, "data").send_keys("{")
        _load(driver, driver.find_element(By.ID, "update"), "data-errors")
        audit("preview with data errors")
        driver.get(f"{server.url}/preview/brands/acme/sent")
        audit("sent mail")
        driver.get(f"{server.url}/preview/brands/acme/sent?recipient=nope&state=lost")
        audit("sent mail, bad search")
        driver.get(f"{server.url}/preview/brands/acme/sent?state=held")
        audit("sent mail, nothing found")
        driver.get(f"{server.url}/preview/brands/acme/sent/{server.sent['acme']}")
        audit("sent message")
        # control: axe does find what the preview's own <pre> used to be (a scrollable
        # region no keyboard can reach), so an empty list above means something
        driver.execute_script(
            "const p = document.getElementById('mail-text');"
            "p.removeAttribute('tabindex'); p.removeAttribute('role');"
            "p.style.maxHeight = '2rem'; p.textContent = 'x\\n'.repeat(400);"
        )
        control = _axe(driver)
        assert "scrollable-region-focusable" in {v["id"] for v in control}, control
        driver.get(f"{server.url}/preview/brands/acme/domain")
        audit("domain setup")
        # the page may already show an earlier check (another ui's run): _load waits
        # for the POST's new page, not for an element the old page has too
        _load(driver, driver.find_element(By.ID, "check-now"), "checked-at")
        audit("domain setup, checked")
        driver.get(f"{server.url}/preview/mail")
        audit("captured mail (reseller)")
        _load(driver, driver.find_element(By.ID, "sign-out"), "token")
        _sign_in(driver, server, server.admin)
        audit("brands (admin)")
        driver.get(f"{server.url}/preview/mail")
        audit("captured mail")
        _load(driver, driver.find_element(By.CSS_SELECTOR, "#captured tbody a"), "mail-text")
        audit("captured message")
        driver.get(f"{server.url}/preview/brands/skriptikoe?event=domain.renewal_reminder")
        audit("preview (admin, another brand)")
    finally:
        driver.quit()
    bad = {page: v for page, v in found.items() if v}
    assert len(found) == 16
    assert bad == {}, "\n".join(
        f"{page}: {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
        for page, vs in bad.items()
        for v in vs
    )


def _is_stale(element: Any) -> bool:
    try:
        element.is_enabled()
    except WebDriverException:  # stale, or "does not belong to the document"
        return True
    return False


def test_keyboard_skip_link_and_language_switch_focus(server: Server, browser: Any) -> None:
    _sign_in(browser, server, server.reseller)
    page = f"{server.url}/preview/brands/acme?event=domain.renewal_reminder&lang=fi"
    browser.get(page)
    # without the skip link: Tab through the page to the mail-language switch
    presses = 0
    while _tab(browser) != "lang-sv":
        presses += 1
        assert presses < 200
    without_skip = presses + 1
    # with it: the first Tab reaches the skip link, Enter moves focus to the message
    browser.get(page)
    assert _tab(browser) == "skip"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, lambda d: _active_id(d) == "message")
    presses = 2
    while _tab(browser) != "lang-sv":
        presses += 1
        assert presses < 200
    with_skip = presses + 1
    print(f"Tab presses to the language switch: {without_skip} without, {with_skip} with skip")
    assert with_skip < without_skip and with_skip <= 5
    # switching the language keeps focus on the switched control, not the page top
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, lambda d: "lang=sv" in d.current_url)
    _wait(browser, lambda d: _active_id(d) == "lang-sv")
    assert _in_mail(browser)[0] == "sv"
    # the same in the edited-data form, whose switch is a submit button
    browser.find_element(By.ID, "update").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button#lang-en"))
    switch = browser.find_element(By.ID, "lang-en")
    switch.click()
    # the clicked button has focus on the old page too: wait for the new document
    _wait(browser, lambda d: _is_stale(switch))
    _wait(browser, lambda d: _active_id(d) == "lang-en")
    assert browser.find_element(By.ID, "lang-en").get_attribute("aria-current") == "true"
    # the mail's parts carry the mail's language, the page its own
    assert browser.find_element(By.ID, "mail-text").get_attribute("lang") == "en"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "sv"
    navs = browser.find_elements(By.TAG_NAME, "nav")
    assert navs and all(n.get_attribute("aria-label") for n in navs)


def test_sent_mail_in_a_real_browser(server: Server, browser: Any, tmp_path: Path) -> None:
    _sign_in(browser, server, server.reseller)
    _click(browser, "nav-sent", "/preview/brands/acme/sent")
    assert "Skickade meddelanden" in browser.title
    rows = browser.find_elements(By.CSS_SELECTOR, "#sent-list tbody tr")
    ids = {int(r.get_attribute("data-id")) for r in rows}
    assert server.sent["acme"] in ids and server.sent["kustwebb"] not in ids
    assert "kustwebb-customer.fi" not in browser.page_source
    # search by recipient through the form
    browser.find_element(By.ID, "s-recipient").send_keys("holder@acme-customer.fi")
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: "recipient=holder" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#sent-list tbody tr")
    assert [int(r.get_attribute("data-id")) for r in rows] == [server.sent["acme"]]
    rows[0].find_element(By.TAG_NAME, "a").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "attempts"))
    assert "Skickat" in browser.find_element(By.ID, "r-state").text
    # (capture mode here: the SMTP replies themselves are in test_preview_self_service.py)
    assert "Servern tog emot meddelandet" in browser.find_element(By.ID, "attempts").text
    assert browser.find_element(By.ID, "mail-text").get_attribute("lang") == "sv"
    browser.save_screenshot(str(tmp_path / "sent-message.png"))
    # the .eml link gives the exact bytes as sent: their SHA-256 is the recorded one
    href = browser.find_element(By.ID, "download").get_attribute("href")
    cookie = browser.get_cookie("notifier_preview")["value"]
    eml = httpx.get(href, cookies={"notifier_preview": cookie}, timeout=30)
    assert eml.status_code == 200
    admin = {"Authorization": f"Bearer {server.admin}"}
    doc = httpx.get(f"{server.url}/v1/messages/{server.sent['acme']}", headers=admin).json()
    assert hashlib.sha256(eml.content).hexdigest() == doc["sent_sha256"]
    # another brand's message is not there for this reseller, whatever the URL
    browser.get(f"{server.url}/preview/brands/acme/sent/{server.sent['kustwebb']}")
    assert "holder@kustwebb" not in browser.page_source
    browser.get(f"{server.url}/preview/brands/kustwebb/sent/{server.sent['kustwebb']}")
    assert "holder@kustwebb" not in browser.page_source


def test_domain_setup_in_a_real_browser(server: Server, browser: Any, tmp_path: Path) -> None:
    _sign_in(browser, server, server.reseller)
    _click(browser, "nav-domain", "/preview/brands/acme/domain")
    assert "Domäninställningar" in browser.title
    value = browser.find_element(By.ID, "rec-dkim-acme2026a-value")
    assert value.get_attribute("readonly") is not None
    assert value.get_attribute("value").startswith("v=DKIM1;")
    # the copy script ran (its buttons are shown) and copies the value
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    button = browser.find_element(By.CSS_SELECTOR, 'button[data-copy="rec-dkim-acme2026a-value"]')
    assert button.is_displayed()
    button.click()
    _wait(browser, lambda d: d.find_element(By.ID, "copy-status").get_attribute("textContent"))
    assert button.text == "Kopierat"
    copied = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('!' + e))"
    )
    assert copied == value.get_attribute("value")
    # check now: a POST with the session's CSRF value, then each record's status
    browser.find_element(By.ID, "check-now").click()
    _wait(browser, lambda d: d.current_url.endswith("/preview/brands/acme/domain#dns-status"))
    assert browser.find_elements(By.ID, "checked-at")
    assert _active_id(browser) == "dns-status"  # focus lands on the outcome

    def status(rid: str) -> str:
        node = browser.find_element(By.CSS_SELECTOR, f"#rec-{rid}-status .st")
        return str(node.get_attribute("class")).split("st-")[-1]

    assert status("dkim-acme2026a") == "ok"
    assert status("spf") == "ok"
    assert status("dmarc") == "ok"
    assert status("link") == "fail"  # domain.acme.fi is not published
    browser.save_screenshot(str(tmp_path / "domain-setup.png"))
