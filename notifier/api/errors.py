"""One JSON error shape for every failure: ``{"error": CODE, "detail": ...}``.

:func:`answer` is the one table from an exception to its HTTP answer (status, code,
detail, headers); the exception handlers and the batch endpoint's per-item errors both
read it, so a batch item says what the same event alone would have been answered.
``detail`` is a list of ``{"field", "message"}`` for 422 (the same shape whether the
pipeline or FastAPI found the problem) and a sentence otherwise. Storage failures are
503 with ``Retry-After``; nothing was accepted then. Browser pages (``/preview``,
``/u/``) get the same status with a small HTML page instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import escape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    Conflict,
    DNSCheckError,
    FieldError,
    HeaderInjection,
    InternalError,
    NotifierError,
    RenderError,
    StorageError,
    ValidationError,
    from_pydantic,
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


@dataclass(frozen=True, slots=True)
class Answer:
    """What an exception is answered with."""

    status: int
    code: str
    detail: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.detail)


def _retry_later() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


#: the message a storage failure is answered with (the cause goes to the log only)
UNAVAILABLE = "the message store is unavailable; nothing was accepted, try again"


def answer(exc: BaseException) -> Answer | None:
    """The HTTP answer for ``exc``, or None for an exception that is a bug (500).

    Most specific first: :class:`Conflict` is a :class:`StorageError`, and every
    notifier error not listed is an internal error."""
    if isinstance(exc, ApiError):
        return Answer(exc.status, exc.code, exc.detail, exc.headers)
    if isinstance(exc, ValidationError):
        return Answer(422, "validation_error", [e.as_dict() for e in exc.errors])
    if isinstance(exc, Conflict):
        return Answer(409, "conflict", str(exc) or "conflict")
    if isinstance(exc, StorageError):
        log.error("storage unavailable: %s", exc)
        return Answer(503, "unavailable", UNAVAILABLE, _retry_later())
    if isinstance(exc, RenderError | HeaderInjection):
        return Answer(422, "render_error", str(exc))
    if isinstance(exc, DNSCheckError):
        return Answer(503, "unavailable", f"DNS check could not run: {exc}", _retry_later())
    if isinstance(exc, InternalError):  # a bug in one event; the trace goes to the log only
        log.error("internal error: %s\n%s", exc, exc.trace.rstrip())
        return Answer(500, "internal_error", "internal error")
    if isinstance(exc, NotifierError):
        log.error("unhandled notifier error", exc_info=exc)
        return Answer(500, "internal_error", "internal error")
    return None


def request_errors(exc: RequestValidationError) -> list[FieldError]:
    """FastAPI's parameter errors with the pipeline's field paths."""
    return from_pydantic(exc.errors(), request=True).errors


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


class CatchAll:
    """Answers an unexpected exception from a route here, with the one error shape.

    Left to Starlette, a bug is answered by its outermost handler, which then re-raises:
    uvicorn sees the exception after the response and drops the keep-alive connection
    without ``Connection: close``, so a client's next request on it fails. Answered
    here, the 500 is an ordinary response and the connection stays usable. An exception
    after the response has started cannot be answered; it propagates and the server
    closes the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            log.error("unhandled error", exc_info=exc)
            response = respond(Request(scope), 500, "internal_error", "internal error")
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``: every notifier error through :func:`answer`,
    and any other exception as a 500 that keeps the connection (:class:`CatchAll`)."""

    async def known(request: Request, exc: Exception) -> Response:
        found = answer(exc)
        if found is None:  # pragma: no cover - only registered for the types answer knows
            return await unexpected(request, exc)
        return respond(request, found.status, found.code, found.detail, found.headers)

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

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return respond(request, 500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, known)
    app.add_exception_handler(NotifierError, known)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(Exception, unexpected)  # the middlewares' own errors
    app.add_middleware(CatchAll)  # innermost of the middlewares: added first
