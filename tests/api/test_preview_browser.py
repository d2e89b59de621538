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
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notifier.api.store import open_store
from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.signing.keys import KeyStore
from notifier.tokens import TokenStore

from .conftest import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUIRED = os.environ.get("NOTIFIER_TEST_REQUIRE_BROWSER") == "1"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
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
    store = open_store(settings, Pipeline(settings))
    tokens = TokenStore(store)
    reseller = tokens.create(["messages:read"], brand="acme", label="browser test")[1]
    admin = tokens.create(["admin"], label="browser test")[1]
    store.outbox.close()  # type: ignore[attr-defined]

    env = {
        "NOTIFIER_VAR_DIR": str(settings.var_dir),
        "NOTIFIER_BRANDS_DIR": str(brands),
        "NOTIFIER_SECRET_KEY": "browser",
        "NOTIFIER_CONFIG": str(root / "absent.toml"),
    }
    with serving(root, env) as url:
        yield Server(url, reseller, admin, settings)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
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
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "sv-FI,sv,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any) -> Any:
    return WebDriverWait(driver, 30, poll_frequency=0.1).until(condition)


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

    browser.find_element(By.CSS_SELECTOR, 'a[href*="event=domain.renewal_reminder"]').click()
    _wait(browser, lambda d: "event=domain.renewal_reminder" in d.current_url)
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
