"""Shared by the server-rendered pages (preview, unsubscribe): templates, security
headers, form parsing and the page language."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from .errors import ApiError
from .ui_text import NATIVE_NAMES, choose, texts

HERE = Path(__file__).resolve().parent

#: No script may run on these pages, nor in the previewed mail (a ``srcdoc`` iframe
#: inherits this policy). Styles may be inline: mail HTML is styled inline.
CSP = (
    "default-src 'none'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; font-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def ui_language(request: Request) -> str:
    return choose(request.headers.get("accept-language"))


def page(
    request: Request,
    template: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    ui = context.pop("ui", None) or ui_language(request)
    body = templates.get_template(template).render(
        ui=ui, t=texts(ui), native=NATIVE_NAMES, **context
    )
    response = HTMLResponse(
        body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
    response.headers["Content-Language"] = ui
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (last value wins)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return {}
    if ctype != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the form as application/x-www-form-urlencoded")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the form is not UTF-8") from None
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=50))
    except ValueError:
        raise ApiError(400, "too many form fields") from None
