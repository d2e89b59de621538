"""The preview's state, sessions and sign-in (see the package docstring)."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from ...brands import Brand
from ...compose.pipeline import Pipeline
from ...config import Settings
from ...errors import (
    ValidationError,
)
from ...tokens import TokenStore
from .. import session as sessions
from ..errors import ApiError
from ..session import COOKIE, LOGIN_COOKIE, Session
from ..ui_text import texts
from ..web import HERE, SECURITY_HEADERS, page, ui_language

router = APIRouter(prefix="/preview", include_in_schema=False)

SAMPLE_EMAIL = "aino.virtanen@example.fi"
SAMPLE_NAME = "Aino Virtanen"
#: "send me a test": at most this many per brand per window
TEST_LIMIT = 5
TEST_WINDOW = 600.0
MAX_CAPTURED = 200
#: "check now" on the domain setup page: at most this many per brand per window
CHECK_LIMIT = 10
CHECK_WINDOW = 600.0
_EML_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,200}\.eml$")


class RateLimiter:
    """Sliding window: at most ``limit`` events per key in ``window`` seconds."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float:
        """0 and count the hit when allowed; otherwise seconds until the next is."""
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 1.0)
        hits.append(now)
        return 0.0


@dataclass
class PreviewState:
    key: bytes
    limiter: RateLimiter
    capture: bool
    mail_dir: Path
    css: bytes
    js: bytes = b""
    check_limiter: RateLimiter = field(
        default_factory=lambda: RateLimiter(CHECK_LIMIT, CHECK_WINDOW)
    )
    #: brand id → its last DNS check made from the domain setup page (see domain.py)


def setup(app: FastAPI, settings: Settings) -> None:
    app.state.preview = PreviewState(
        key=sessions.session_key(settings.secret()),
        limiter=RateLimiter(TEST_LIMIT, TEST_WINDOW),
        capture=settings.smtp_url is None,
        mail_dir=settings.mail_dir,
        css=(HERE / "static" / "preview.css").read_bytes(),
        js=(HERE / "static" / "copy.js").read_bytes(),
    )


def _state(request: Request) -> PreviewState:
    state: PreviewState = request.app.state.preview
    return state


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


# --- sessions ---------------------------------------------------------------------------


def _session(request: Request) -> Session | None:
    found = sessions.load(_state(request).key, request.cookies.get(COOKIE))
    if found is None:
        return None
    tokens: TokenStore = request.app.state.tokens
    return found if tokens.is_active(found.token_id) else None


def _signed_in(request: Request) -> Session:
    found = _session(request)
    if found is None:
        raise _SignIn()
    return found


class _SignIn(Exception):
    """Not signed in (or the session ended): show the sign-in page."""


async def _check_csrf(request: Request, found: Session, fields: dict[str, str]) -> None:
    if not sessions.csrf_ok(found, fields.get("csrf")):
        raise ApiError(403, texts(ui_language(request))["csrf"])


def _brand(request: Request, found: Session, brand_id: str) -> Brand:
    if not found.sees(brand_id):
        raise ApiError(404, texts(ui_language(request))["not_found"])
    try:
        return _pipeline(request).brands.get(brand_id)
    except ValidationError:
        raise ApiError(404, texts(ui_language(request))["not_found"]) from None


def _sign_in_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    """The sign-in form, with its pre-session CSRF value and the cookie it is bound to."""
    nonce = sessions.login_nonce(request.cookies.get(LOGIN_COOKIE))
    response = page(
        request,
        "login.html",
        status=status,
        error=error,
        session=None,
        capture=False,
        login_csrf=sessions.login_csrf(_state(request).key, nonce),
    )
    response.delete_cookie(COOKIE, path="/preview")
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        path="/preview",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _host_port(host: str, scheme: str) -> tuple[str, int | None]:
    """``example.org:443`` over https and ``example.org`` compare equal."""
    split = urlsplit(f"{scheme}://{host}")
    try:
        port = split.port
    except ValueError:
        return "", None
    default = {"http": 80, "https": 443}.get(scheme)
    return (split.hostname or "", None if port == default else port)


def cross_origin(request: Request) -> bool:
    """Did the browser say this request comes from another origin? Every current
    browser sends ``Sec-Fetch-Site`` (only ``same-origin`` and ``none``, a request the
    user made, pass), older ones ``Origin`` (must name this host; ``null`` never does).
    A client that sends neither is no browser, and so no CSRF victim; the form's own
    CSRF value still applies to it."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    split = urlsplit(origin)
    if split.scheme not in ("http", "https") or not split.netloc:
        return True  # "null" (sandboxed frames, data: URLs) or garbage
    host = request.headers.get("host", "")
    return _host_port(split.netloc, split.scheme) != _host_port(host, split.scheme)


def sign_in_allowed(request: Request, fields: dict[str, str]) -> bool:
    """Login CSRF: the post must come from this origin and carry the form's value."""
    if cross_origin(request):
        return False
    return sessions.login_csrf_ok(
        _state(request).key, request.cookies.get(LOGIN_COOKIE), fields.get("csrf")
    )


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def install_sign_in_handler(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and request.url.path != "/preview":
            return _redirect("/preview")
        t = texts(ui_language(request))
        return _sign_in_page(request, t["session_expired"], status=401)

    app.add_exception_handler(_SignIn, handler)
