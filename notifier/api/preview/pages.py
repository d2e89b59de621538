"""The preview pages: sign in, a brand's messages, download, send a test."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ... import events as catalog
from ...brands import Brand
from ...errors import (
    FieldError,
    HeaderInjection,
    RenderError,
    StorageError,
    ValidationError,
)
from ...tokens import TokenStore
from .. import session as sessions
from ..session import COOKIE, LOGIN_COOKIE, Session
from ..ui_text import texts
from ..web import form, page, ui_language
from .compose import (
    _choose,
    _eml_response,
    _filename,
    _parse_data,
    _preview_page,
    _sample_text,
    compose_preview,
)
from .state import (
    _brand,
    _check_csrf,
    _pipeline,
    _redirect,
    _session,
    _sign_in_page,
    _signed_in,
    _state,
    router,
    sign_in_allowed,
)

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
    if not sign_in_allowed(request, fields):
        return _sign_in_page(request, t["csrf"], status=403)
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
    response.delete_cookie(LOGIN_COOKIE, path="/preview")
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
