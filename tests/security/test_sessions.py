"""Issue 10 §5: sessions, tokens, unsubscribe links and the preview's page text.

- A revoked API token is refused on the very next request by every process that shares
  the database (no per-process grace period).
- The preview's sign-in form cannot be submitted from another origin (login CSRF).
- Unsubscribe tokens are encrypted and authenticated; links already sent keep working.
- Every page-text key renders as its text (``t.update`` once showed a dict method).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from notifier.api import create_app
from notifier.api.ui_text import TEXT, texts
from notifier.compose import unsubscribe as links
from notifier.config import Secret, Settings
from notifier.tokens import TokenStore
from tests.conftest import postgres_schema

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def _store(client: TestClient) -> TokenStore:
    store: TokenStore = client.app.state.tokens  # type: ignore[attr-defined]
    return store


# --- revocation holds from the next request, in every process -------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database two processes share: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with postgres_schema() as url:
        yield url


def test_a_token_revoked_by_another_process_is_refused_on_the_next_request(
    tmp_path: Path, shared_db: str
) -> None:
    settings = Settings(
        var_dir=tmp_path / "var", secret_key=Secret("test-secret"), database_url=shared_db
    )
    with TestClient(create_app(settings)) as api:
        record, secret = _store(api).create(["messages:read"], label="to revoke")
        bearer = {"Authorization": f"Bearer {secret}"}
        for _ in range(3):  # used, and so remembered if anything remembers it
            assert api.get("/v1/messages", headers=bearer).status_code == 200
        env = {
            **os.environ,
            "NOTIFIER_VAR_DIR": str(settings.var_dir),
            "NOTIFIER_SECRET_KEY": "test-secret",
            "NOTIFIER_DATABASE_URL": shared_db,
        }
        revoke = subprocess.run(
            [sys.executable, "-m", "notifier.cli", "token", "revoke", record.id],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert revoke.returncode == 0, revoke.stderr
        r = api.get("/v1/messages", headers=bearer)
        assert r.status_code == 401, r.text


def test_a_token_revoked_in_one_app_is_refused_by_another_at_once(
    tmp_path: Path, shared_db: str
) -> None:
    settings = Settings(
        var_dir=tmp_path / "var", secret_key=Secret("test-secret"), database_url=shared_db
    )
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        record, secret = _store(one).create(["admin"])
        bearer = {"Authorization": f"Bearer {secret}"}
        assert two.get("/v1/messages", headers=bearer).status_code == 200
        assert _store(one).revoke(record.id)
        assert two.get("/v1/messages", headers=bearer).status_code == 401
        assert one.get("/v1/messages", headers=bearer).status_code == 401


# --- login CSRF on the preview's sign-in form -----------------------------------------------


def _form_csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the sign-in form carries a CSRF value"
    return m.group(1)


def _admin(client: TestClient) -> str:
    return _store(client).create(["admin"])[1]


def _opens_session(set_cookie: str) -> bool:
    """Does a ``Set-Cookie`` open a session (not merely delete one)?"""
    return re.search(r'notifier_preview=[^";]', set_cookie) is not None


def _signed_in(client: TestClient) -> bool:
    r = client.get("/preview", follow_redirects=False)
    return r.status_code == 200 and 'id="sign-in"' not in r.text and 'id="sign-out"' in r.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed frame or a data: URL
        {"Sec-Fetch-Site": "same-site"},  # a sibling host (cookies are shared there)
        {},  # no browser hints, no form value
    ],
)
def test_a_sign_in_posted_from_another_origin_is_refused(
    client: TestClient, headers: dict[str, str]
) -> None:
    """What an attacker's auto-submitted form sends: the attacker's own valid token,
    no CSRF value it cannot read. The victim's browser must stay signed out."""
    r = client.post(
        "/preview/login", data={"token": _admin(client)}, headers=headers, follow_redirects=False
    )
    assert r.status_code == 403
    assert not _opens_session(r.headers.get("set-cookie", ""))
    assert not _signed_in(client)


def test_a_cross_origin_sign_in_is_refused_even_with_a_valid_form_value(
    client: TestClient,
) -> None:
    csrf = _form_csrf(client.get("/preview").text)
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "http://testserver:8080"},
    ):
        r = client.post(
            "/preview/login",
            data={"token": _admin(client), "csrf": csrf},
            headers=headers,
            follow_redirects=False,
        )
        assert r.status_code == 403, headers
    assert not _signed_in(client)


def test_a_forged_or_planted_sign_in_value_is_refused(client: TestClient) -> None:
    # a cookie planted by a sibling host, with a value the attacker made up
    client.cookies.set("notifier_login", "A" * 24, path="/preview")
    for csrf in ("A" * 24, base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("="), ""):
        r = client.post(
            "/preview/login",
            data={"token": _admin(client), "csrf": csrf},
            follow_redirects=False,
        )
        assert r.status_code == 403
    assert not _signed_in(client)
    # a value from another browser's cookie does not fit this browser's cookie
    with TestClient(client.app) as other:
        theirs = _form_csrf(other.get("/preview").text)
    client.cookies.set("notifier_login", "B" * 24, path="/preview")
    r = client.post(
        "/preview/login", data={"token": _admin(client), "csrf": theirs}, follow_redirects=False
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://testserver"},  # a browser without Fetch Metadata
        {"Origin": "http://testserver:80"},
        {},  # no browser hints: the form value alone
    ],
)
def test_the_sign_in_form_works_from_its_own_page(
    client: TestClient, headers: dict[str, str]
) -> None:
    page = client.get("/preview")
    assert "set-cookie" in page.headers and "SameSite=strict" in page.headers["set-cookie"]
    r = client.post(
        "/preview/login",
        data={"token": _admin(client), "csrf": _form_csrf(page.text)},
        headers=headers,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert _opens_session(r.headers["set-cookie"])
    assert _signed_in(client)


def test_a_refused_sign_in_shows_the_form_again_ready_to_retry(client: TestClient) -> None:
    r = client.post("/preview/login", data={"token": _admin(client)}, follow_redirects=False)
    assert r.status_code == 403 and 'id="sign-in-error"' in r.text
    r = client.post(
        "/preview/login",
        data={"token": _admin(client), "csrf": _form_csrf(r.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303


# --- unsubscribe tokens: encrypted, authenticated, old links still work ---------------------

SECRET = b"test-secret"
SUB = links.Subscription("acme", "aino.virtanen@example.fi", "domain.renewed")
#: the link in mail sent before encryption (the golden message's, made with "test-secret")
OLD_TOKEN = (
    "WyJhY21lIiwiYWluby52aXJ0YW5lbkBleGFtcGxlLmZpIiwiZG9tYWluLnJlbmV3ZWQiXQ.kx4kmzaHpC9SaKnc6vy85A"
)


def _decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_the_unsubscribe_token_reveals_nothing() -> None:
    token = links.make_token(SECRET, SUB)
    raw = _decoded(token)
    for secret_part in (b"aino", b"virtanen", b"example.fi", b"acme", b"renewed", b"domain"):
        assert secret_part not in raw
        assert secret_part.decode() not in token
    assert "." not in token
    assert links.read_token(SECRET, token) == SUB
    # short: the whole URL of the sample is about 107 characters (the old one was 120)
    assert len(links.url("domain.acme.fi", token)) <= 110
    # the same subscription always gets the same link (the golden files stay stable)
    assert links.make_token(SECRET, SUB) == token


def test_a_tampered_unsubscribe_token_is_refused(client: TestClient, settings: Settings) -> None:
    token = links.make_token(settings.secret(), SUB)
    raw = bytearray(_decoded(token))
    tampered = []
    for i in (0, 1, 8, len(raw) // 2, len(raw) - 1):
        copy = bytearray(raw)
        copy[i] ^= 0x01
        tampered.append(base64.urlsafe_b64encode(bytes(copy)).decode().rstrip("="))
    tampered.append(token[:-4])
    tampered.append(links.make_token(b"another secret", SUB))
    for bad in tampered:
        with pytest.raises(Exception, match="token"):
            links.read_token(settings.secret(), bad)
        assert client.get(f"/u/{bad}").status_code == 404
        assert client.post(f"/u/{bad}").status_code == 404
    box = client.app.state.store.outbox  # type: ignore[attr-defined]
    assert not box.is_suppressed("acme", SUB.email)


def test_old_unsubscribe_links_still_unsubscribe(client: TestClient, settings: Settings) -> None:
    assert settings.secret() == SECRET
    assert links.read_token(SECRET, OLD_TOKEN) == SUB
    page = client.get(f"/u/{OLD_TOKEN}", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and SUB.email in page.text
    assert client.post(f"/u/{OLD_TOKEN}").status_code == 200
    box = client.app.state.store.outbox  # type: ignore[attr-defined]
    assert box.is_suppressed("acme", SUB.email)
    # and an old-format token is verified as before: a changed payload is refused
    mac = OLD_TOKEN.split(".")[1]
    forged = base64.urlsafe_b64encode(b'["acme","someone@example.fi","x"]').decode().rstrip("=")
    assert client.get(f"/u/{forged}.{mac}").status_code == 404


def test_new_unsubscribe_links_unsubscribe(client: TestClient, settings: Settings) -> None:
    token = links.make_token(settings.secret(), SUB)
    assert client.post(f"/u/{token}").status_code == 200
    box = client.app.state.store.outbox  # type: ignore[attr-defined]
    assert box.is_suppressed("acme", SUB.email)


# --- page text: every key reads as its text --------------------------------------------------


def test_every_page_text_key_renders_as_its_text_in_a_template() -> None:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    for lang, text in TEXT.items():
        t = texts(lang)
        for key, value in text.items():
            assert env.from_string("{{ t." + key + " }}").render(t=t) == value, (lang, key)
            assert env.from_string("{{ t[k] }}").render(t=t, k=key) == value


@pytest.mark.parametrize(
    ("lang", "label"),
    [("fi", "Päivitä esikatselu"), ("sv", "Uppdatera förhandsvisningen"), ("en", "Update preview")],
)
def test_the_preview_update_button_shows_its_label(
    client: TestClient, lang: str, label: str
) -> None:
    page = client.get("/preview", headers={"Accept-Language": lang})
    client.post(
        "/preview/login",
        data={"token": _admin(client), "csrf": _form_csrf(page.text)},
        headers={"Accept-Language": lang},
    )
    r = client.get("/preview/brands/acme", headers={"Accept-Language": lang})
    assert r.status_code == 200
    assert f'id="update">{label}</button>' in r.text
    assert "built-in method" not in r.text and "object at 0x" not in r.text
