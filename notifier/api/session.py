"""Signed preview sessions: ``base64url(json).base64url(hmac-sha256)`` in a cookie.

The cookie is HttpOnly and SameSite=Strict (Secure over HTTPS); it names the token it
was opened with, so revoking the token ends the session at the next request. Each
session carries a random CSRF value that every form posts back.

The sign-in form comes before any session, so it has a CSRF value of its own: a random
nonce in a short cookie (``notifier_login``, HttpOnly, SameSite=Strict) and its MAC in
the form. A page on another origin can make a browser post the form, but cannot read
the nonce or forge its MAC, so it cannot sign a victim in as somebody else (login
CSRF). The sign-in route also refuses posts a browser marks as cross-origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

COOKIE = "notifier_preview"
MAX_AGE = 8 * 3600
#: the sign-in form's pre-session cookie (a random nonce; the form carries its MAC)
LOGIN_COOKIE = "notifier_login"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{24}$")


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str
    brand: str | None  # None: an admin session, every brand
    csrf: str
    expires: int

    @property
    def admin(self) -> bool:
        return self.brand is None

    def sees(self, brand_id: str) -> bool:
        return self.brand is None or self.brand == brand_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(secret: bytes) -> bytes:
    """A key of its own, so a session MAC can never pass for an unsubscribe token's."""
    return hmac.new(secret, b"notifier/preview-session/v1", hashlib.sha256).digest()


def new_session(token_id: str, brand: str | None, now: float | None = None) -> Session:
    now = time.time() if now is None else now
    return Session(token_id, brand, secrets.token_urlsafe(18), int(now) + MAX_AGE)


def dump(key: bytes, session: Session) -> str:
    payload = json.dumps(
        {"t": session.token_id, "b": session.brand, "c": session.csrf, "x": session.expires},
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def load(key: bytes, value: str | None, now: float | None = None) -> Session | None:
    """The session in a cookie value, or ``None`` if absent, forged or expired."""
    if not value or value.count(".") != 1 or len(value) > 1024:
        return None
    payload_b64, mac_b64 = value.split(".")
    try:
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        return None
    try:
        doc = json.loads(payload)
        session = Session(str(doc["t"]), doc["b"], str(doc["c"]), int(doc["x"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires < (time.time() if now is None else now):
        return None
    return session


def csrf_ok(session: Session, value: str | None) -> bool:
    return bool(value) and hmac.compare_digest(session.csrf.encode(), (value or "").encode())


def login_nonce(current: str | None) -> str:
    """The sign-in cookie's nonce: the browser's current one if well-formed (several
    tabs keep working), else a new one."""
    if current and _NONCE.match(current):
        return current
    return secrets.token_urlsafe(18)


def login_csrf(key: bytes, nonce: str) -> str:
    """The sign-in form's CSRF value: a MAC of the cookie's nonce (a cookie planted by
    a sibling host cannot come with a matching value)."""
    return _b64(hmac.new(key, b"login\x00" + nonce.encode(), hashlib.sha256).digest())


def login_csrf_ok(key: bytes, nonce: str | None, value: str | None) -> bool:
    if not nonce or not value or not _NONCE.match(nonce):
        return False
    return hmac.compare_digest(login_csrf(key, nonce).encode(), value.encode())
