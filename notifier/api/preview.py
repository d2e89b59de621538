"""``/preview``: what a brand's customers will get, before any of them does.

Server-rendered pages, no script anywhere. Sign in with a token: a reseller token
opens its own brand, an admin token every brand. The session is a signed cookie
(HttpOnly, SameSite=Strict) naming the token, so revoking the token signs the session
out. Every form carries the session's CSRF value.

The previewed mail is composed exactly as the outbox composes it (same pipeline, same
signing decision), its HTML shown in ``<iframe sandbox srcdoc=…>`` without
``allow-scripts`` under a page policy that forbids scripts too. "Send me a test" goes
through the outbox to the brand's configured test address only, a few times per
window. In capture mode (no ``smtp_url``) the captured .eml files are listed too.
"""

from __future__ import annotations

import email
import email.policy
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from .. import events as catalog
from ..brands import Brand
from ..compose.pipeline import Pipeline
from ..config import Settings
from ..errors import (
    FieldError,
    HeaderInjection,
    RenderError,
    StorageError,
    ValidationError,
)
from ..tokens import TokenStore
from . import session as sessions
from .errors import ApiError
from .session import COOKIE, Session
from .ui_text import texts
from .web import HERE, SECURITY_HEADERS, form, page, ui_language

router = APIRouter(prefix="/preview", include_in_schema=False)

SAMPLE_EMAIL = "aino.virtanen@example.fi"
SAMPLE_NAME = "Aino Virtanen"
#: "send me a test": at most this many per brand per window
TEST_LIMIT = 5
TEST_WINDOW = 600.0
MAX_CAPTURED = 200
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


def setup(app: FastAPI, settings: Settings) -> None:
    app.state.preview = PreviewState(
        key=sessions.session_key(settings.secret()),
        limiter=RateLimiter(TEST_LIMIT, TEST_WINDOW),
        capture=settings.smtp_url is None,
        mail_dir=settings.mail_dir,
        css=(HERE / "static" / "preview.css").read_bytes(),
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
    response = page(request, "login.html", status=status, error=error, session=None, capture=False)
    response.delete_cookie(COOKIE, path="/preview")
    return response


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


# --- composing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    language: str
    subject: str
    sender: str
    reply_to: str | None
    to: str
    html: str
    text: str
    eml: bytes
    notice: str | None  # "via_platform" | "held" | None
    envelope: str  # the envelope sender (Return-Path)
    dkim_domain: str  # d= of the signature the worker adds


def compose_preview(
    pipeline: Pipeline, brand_id: str, event_name: str, lang: str, data: Any
) -> Preview:
    """Compose the message through the one compose sequence the intake uses (same
    sender decision, same bytes); raises ValidationError / RenderError."""
    raw = {
        "event": event_name,
        "brand": brand_id,
        "recipient": {"email": SAMPLE_EMAIL, "name": SAMPLE_NAME, "language": lang},
        "data": data,
    }
    composed = pipeline.prepare(raw)
    sender = composed.sender
    head = BytesHeaderParser(policy=email.policy.default).parsebytes(composed.outgoing.data)
    notice = "held" if sender.held else ("via_platform" if sender.via_platform else None)
    return Preview(
        language=composed.rendered.language,
        subject=str(head.get("Subject", "")),
        sender=str(head.get("From", "")),
        reply_to=str(head["Reply-To"]) if head.get("Reply-To") else None,
        to=str(head.get("To", "")),
        html=composed.rendered.html,
        text=composed.rendered.text,
        eml=composed.outgoing.data,
        notice=notice,
        envelope=composed.outgoing.mail_from,
        dkim_domain=sender.signer.mail_domain,
    )


def _groups(t: dict[str, str]) -> list[tuple[str, list[catalog.EventSpec]]]:
    out = []
    for audience in ("registrant", "reseller"):
        specs = [s for s in catalog.CATALOG.values() if s.audience == audience]
        out.append((t[f"audience_{audience}"], specs))
    return out


def _languages(brand: Brand) -> list[str]:
    return [lang for lang in ("fi", "sv", "en") if lang in brand.languages]


def _sample_text(event_name: str) -> str:
    return json.dumps(dict(catalog.CATALOG[event_name].sample), indent=2, ensure_ascii=False)


def _parse_data(text: str, t: dict[str, str]) -> tuple[Any, list[FieldError]]:
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [FieldError("data", t["invalid_json"].format(error=exc))]
    except RecursionError:
        return None, [FieldError("data", t["invalid_json"].format(error="nested too deeply"))]


def _filename(brand_id: str, event_name: str, lang: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", f"{brand_id}-{event_name}-{lang}")
    return f"{base}.eml"


def _eml_response(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="message/rfc822",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


async def _preview_page(
    request: Request,
    found: Session,
    brand: Brand,
    event_name: str,
    lang: str,
    data_text: str,
    *,
    custom: bool,
    flash: str | None = None,
    flash_ok: bool = True,
    errors: list[FieldError] | None = None,
    status: int = 200,
) -> Response:
    ui = ui_language(request)
    t = texts(ui)
    errors = list(errors or [])
    preview: Preview | None = None
    render_error: str | None = None
    if not errors:
        data, errors = _parse_data(data_text, t)
        if not errors:
            try:
                preview = await run_in_threadpool(
                    compose_preview, _pipeline(request), brand.id, event_name, lang, data
                )
            except ValidationError as exc:
                errors = exc.errors
            except (RenderError, HeaderInjection) as exc:
                render_error = t["render_failed"].format(error=exc)
    if (errors or render_error) and status == 200:
        status = 422
    state = _state(request)
    return page(
        request,
        "preview.html",
        status=status,
        ui=ui,
        session=found,
        capture=state.capture,
        brand=brand,
        brands=_pipeline(request).brands.all() if found.admin else [],
        groups=_groups(t),
        spec=catalog.CATALOG[event_name],
        event=event_name,
        lang=lang,
        langs=_languages(brand),
        custom=custom,
        data_text=data_text,
        errors=errors,
        render_error=render_error,
        preview=preview,
        flash=flash,
        flash_ok=flash_ok,
        test_address=brand.test_address,
    )


def _choose(brand: Brand, event_name: str | None, lang: str | None, ui: str) -> tuple[str, str]:
    if event_name is None:
        event_name = next(iter(catalog.CATALOG))
    elif event_name not in catalog.CATALOG:
        raise ApiError(404, texts(ui)["not_found"])
    if lang not in brand.languages:
        lang = brand.default_language
    return event_name, lang


# --- routes -------------------------------------------------------------------------------


@router.get("")
async def index(request: Request) -> Response:
    found = _session(request)
    if found is None:
        return _sign_in_page(request)
    if found.brand is not None:
        return _redirect(f"/preview/brands/{found.brand}")
    return page(
        request,
        "brands.html",
        session=found,
        capture=_state(request).capture,
        brands=_pipeline(request).brands.all(),
    )


@router.post("/login")
async def login(request: Request) -> Response:
    t = texts(ui_language(request))
    fields = await form(request)
    tokens: TokenStore = request.app.state.tokens
    token = tokens.authenticate(fields.get("token", "").strip())
    if token is None:
        return _sign_in_page(request, t["bad_token"], status=401)
    if token.brand is None and not token.admin:
        return _sign_in_page(request, t["unbound_token"], status=403)
    if token.brand is not None:
        try:
            _pipeline(request).brands.get(token.brand)
        except ValidationError:
            return _sign_in_page(request, t["bad_token"], status=403)
    opened = sessions.new_session(token.id, token.brand)
    response = _redirect("/preview")
    response.set_cookie(
        COOKIE,
        sessions.dump(_state(request).key, opened),
        max_age=sessions.MAX_AGE,
        path="/preview",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = _session(request)
    if found is not None:
        await _check_csrf(request, found, await form(request))
    response = _redirect("/preview")
    response.delete_cookie(COOKIE, path="/preview")
    return response


@router.get("/static/preview.css")
async def stylesheet(request: Request) -> Response:
    return Response(
        _state(request).css,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/brands/{brand_id}")
async def brand_page(
    request: Request,
    brand_id: str,
    event: Annotated[str | None, Query(max_length=80)] = None,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    event_name, lang = _choose(brand, event, lang, ui_language(request))
    return await _preview_page(
        request, found, brand, event_name, lang, _sample_text(event_name), custom=False
    )


@router.get("/brands/{brand_id}/eml")
async def brand_eml(
    request: Request,
    brand_id: str,
    event: Annotated[str | None, Query(max_length=80)] = None,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The raw message with the sample data (the form's download button sends edits)."""
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    event_name, lang = _choose(brand, event, lang, ui_language(request))
    preview = await run_in_threadpool(
        compose_preview,
        _pipeline(request),
        brand.id,
        event_name,
        lang,
        dict(catalog.CATALOG[event_name].sample),
    )
    return _eml_response(preview.eml, _filename(brand.id, event_name, preview.language))


@router.post("/brands/{brand_id}")
async def brand_post(request: Request, brand_id: str) -> Response:
    """The data form: update the preview, download the .eml, or send a test."""
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    fields = await form(request)
    await _check_csrf(request, found, fields)
    ui = ui_language(request)
    t = texts(ui)
    event_name, lang = _choose(
        brand, fields.get("event"), fields.get("switch_lang") or fields.get("lang"), ui
    )
    data_text = fields.get("data", "")
    action = fields.get("action", "render")
    if action == "eml":
        data, errors = _parse_data(data_text, t)
        if not errors:
            try:
                preview = await run_in_threadpool(
                    compose_preview, _pipeline(request), brand.id, event_name, lang, data
                )
                return _eml_response(preview.eml, _filename(brand.id, event_name, preview.language))
            except ValidationError as exc:
                errors = exc.errors
        return await _preview_page(
            request, found, brand, event_name, lang, data_text, custom=True, errors=errors
        )
    if action == "test":
        return await _send_test(request, found, brand, event_name, lang, data_text)
    return await _preview_page(request, found, brand, event_name, lang, data_text, custom=True)


async def _send_test(
    request: Request, found: Session, brand: Brand, event_name: str, lang: str, data_text: str
) -> Response:
    t = texts(ui_language(request))

    async def again(
        flash: str, ok: bool = False, status: int = 200, errors: list[FieldError] | None = None
    ) -> Response:
        return await _preview_page(
            request,
            found,
            brand,
            event_name,
            lang,
            data_text,
            custom=True,
            flash=flash,
            flash_ok=ok,
            status=status,
            errors=errors,
        )

    if brand.test_address is None:
        return await again(t["no_test_address"], status=409)
    data, errors = _parse_data(data_text, t)
    if errors:
        return await again(t["data_errors"], errors=errors)
    spec = catalog.CATALOG[event_name]
    if spec.cancels and (
        not isinstance(data, dict) or data.get("domain") != spec.sample.get("domain")
    ):
        # A test with a real domain would cancel that domain's pending reminders.
        return await again(t["test_domain_locked"], status=409)
    try:
        await run_in_threadpool(
            compose_preview, _pipeline(request), brand.id, event_name, lang, data
        )
    except ValidationError as exc:
        return await again(t["data_errors"], errors=exc.errors)
    except (RenderError, HeaderInjection):
        return await again(t["test_unavailable"])
    wait = _state(request).limiter.hit(brand.id)
    if wait:
        return await again(t["test_limited"].format(minutes=math.ceil(wait / 60)), status=429)
    raw = {
        "event": event_name,
        "brand": brand.id,
        "recipient": {"email": brand.test_address, "language": lang},
        "data": data,
        "idempotency_key": f"preview-test-{uuid.uuid4().hex}",
    }
    try:
        await request.app.state.store.accept(raw)
    except ValidationError as exc:
        return await again(t["data_errors"], errors=exc.errors)
    except StorageError:
        return await again(t["test_unavailable"], status=503)
    return await again(t["test_sent"].format(address=brand.test_address), ok=True)


# --- captured mail (local capture mode) --------------------------------------------------


@dataclass(frozen=True)
class Captured:
    name: str
    date: str
    sender: str
    to: str
    subject: str


def _captured_files(state: PreviewState) -> list[Path]:
    if not state.mail_dir.is_dir():
        return []
    files = [p for p in state.mail_dir.iterdir() if _EML_NAME.match(p.name) and p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return files[:MAX_CAPTURED]


def _addresses(value: Any) -> set[str]:
    try:
        return {a.addr_spec.lower() for a in getattr(value, "addresses", ())}
    except (AttributeError, ValueError):
        return set()


def _may_see(found: Session, request: Request, to_header: Any) -> bool:
    """Admins see every captured mail; a reseller the mail to its own test address."""
    if found.admin:
        return True
    brand = _pipeline(request).brands.get(str(found.brand))
    return brand.test_address is not None and brand.test_address.lower() in _addresses(to_header)


def _require_capture(request: Request) -> PreviewState:
    state = _state(request)
    if not state.capture:
        raise ApiError(404, texts(ui_language(request))["not_found"])
    return state


@router.get("/mail")
async def captured_list(request: Request) -> Response:
    found = _signed_in(request)
    state = _require_capture(request)
    parser = BytesHeaderParser(policy=email.policy.default)
    mails = []
    for path in _captured_files(state):
        try:
            with path.open("rb") as fh:
                head = parser.parse(fh)
        except OSError:
            continue
        if not _may_see(found, request, head.get("To")):
            continue
        mails.append(
            Captured(
                path.name,
                str(head.get("Date", "")),
                str(head.get("From", "")),
                str(head.get("To", "")),
                str(head.get("Subject", "")),
            )
        )
    return page(request, "mail.html", session=found, capture=True, mails=mails)


def _captured(request: Request, found: Session, name: str) -> tuple[Path, EmailMessage]:
    state = _require_capture(request)
    path = state.mail_dir / name
    not_found = ApiError(404, texts(ui_language(request))["not_found"])
    if not _EML_NAME.match(name) or not path.is_file():
        raise not_found
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    if not _may_see(found, request, message.get("To")):
        raise not_found
    return path, message


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        return ""


@router.get("/mail/{name}")
async def captured_view(request: Request, name: str) -> Response:
    found = _signed_in(request)
    path, message = _captured(request, found, name)
    return page(
        request,
        "mail_view.html",
        session=found,
        capture=True,
        name=path.name,
        mail_headers=[
            (k, str(message.get(k)))
            for k in ("Date", "From", "Reply-To", "To", "Subject", "Message-ID")
            if message.get(k)
        ],
        html=_part(message, "html"),
        text=_part(message, "plain"),
    )


@router.get("/mail/{name}/raw")
async def captured_raw(request: Request, name: str) -> Response:
    found = _signed_in(request)
    path, _ = _captured(request, found, name)
    return _eml_response(path.read_bytes(), path.name)


def install_sign_in_handler(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and request.url.path != "/preview":
            return _redirect("/preview")
        t = texts(ui_language(request))
        return _sign_in_page(request, t["session_expired"], status=401)

    app.add_exception_handler(_SignIn, handler)
