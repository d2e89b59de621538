"""One JSON error shape for every failure: ``{"error": CODE, "detail": ...}``.

``detail`` is a list of ``{"field", "message"}`` for 422 (the same shape whether the
pipeline or FastAPI found the problem) and a sentence otherwise. Storage failures are
503 with ``Retry-After``; nothing was accepted then. Browser pages (``/preview``,
``/u/``) get the same status with a small HTML page instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    Conflict,
    DNSCheckError,
    FieldError,
    HeaderInjection,
    NotifierError,
    RenderError,
    StorageError,
    ValidationError,
)

log = logging.getLogger("notifier.api")

RETRY_AFTER_SECONDS = 5

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise from a route to answer with ``status`` and the JSON error shape."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(detail)


def not_found(what: str = "not found") -> ApiError:
    return ApiError(404, what)


def unauthorized(detail: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="notifier"'})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, detail)


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail}


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "data", "items", 0, "price")`` → ``data.items[0].price``."""
    parts: list[str] = []
    items = list(loc)
    if items and items[0] in ("body", "query", "path", "header", "cookie"):
        items = items[1:]
    for item in items:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


def request_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "missing":
            msg = "field required"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        out.append(FieldError(field_path(err.get("loc", ())), msg))
    return out


def _is_page(request: Request) -> bool:
    path = request.url.path
    return (path == "/preview" or path.startswith(("/preview/", "/u/"))) and "text/html" in (
        request.headers.get("accept", "")
    )


def respond(
    request: Request,
    status: int,
    code: str,
    detail: Any,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if _is_page(request):
        text = (
            detail
            if isinstance(detail, str)
            else "; ".join(f"{d['field']}: {d['message']}" for d in detail)
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{status}</title></head><body><h1>{status}</h1><p>{escape(text)}</p></body></html>"
        )
        return HTMLResponse(
            page,
            status_code=status,
            headers={
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                **dict(headers or {}),
            },
        )
    return JSONResponse(error_body(code, detail), status_code=status, headers=dict(headers or {}))


def validation_response(request: Request, errors: Sequence[FieldError]) -> Response:
    return respond(request, 422, "validation_error", [e.as_dict() for e in errors])


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return respond(request, exc.status, exc.code, exc.detail, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return respond(
            request, exc.status_code, CODES.get(exc.status_code, "error"), detail, headers
        )

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_response(request, request_errors(exc))

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError)
        return validation_response(request, exc.errors)

    async def conflict(request: Request, exc: Exception) -> Response:
        return respond(request, 409, "conflict", str(exc) or "conflict")

    async def storage(request: Request, exc: Exception) -> Response:
        log.error("storage unavailable: %s", exc)
        return respond(
            request,
            503,
            "unavailable",
            "the message store is unavailable; nothing was accepted, try again",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def render(request: Request, exc: Exception) -> Response:
        return respond(request, 422, "render_error", str(exc))

    async def dns(request: Request, exc: Exception) -> Response:
        return respond(
            request,
            503,
            "unavailable",
            f"DNS check could not run: {exc}",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def notifier_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled notifier error", exc_info=exc)
        return respond(request, 500, "internal_error", "internal error")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return respond(request, 500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(ValidationError, validation)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(StorageError, storage)
    app.add_exception_handler(RenderError, render)
    app.add_exception_handler(HeaderInjection, render)
    app.add_exception_handler(DNSCheckError, dns)
    app.add_exception_handler(NotifierError, notifier_error)
    app.add_exception_handler(Exception, unexpected)
