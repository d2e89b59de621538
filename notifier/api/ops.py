"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ..errors import StorageError
from ..tokens import Token
from .auth import require
from .errors import RETRY_AFTER_SECONDS
from .metrics import CONTENT_TYPE, HttpMetrics, Writer, write_stats
from .store import Store

router = APIRouter()


@router.get("/healthz", summary="Liveness", tags=["ops"])
async def healthz() -> dict[str, str]:
    """The process answers. Says nothing about the database (see `/readyz`)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    tags=["ops"],
    responses={503: {"description": "the database is not reachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers; 503 with `Retry-After` otherwise."""
    store: Store = request.app.state.store
    checks: dict[str, Any] = {}
    ok = True
    try:
        await store.ping()
        checks["outbox"] = "ok"
    except StorageError as exc:
        ok = False
        checks["outbox"] = str(exc)
    try:
        await run_in_threadpool(request.app.state.tokens.ping)
        checks["tokens"] = "ok"
    except StorageError as exc:
        ok = False
        checks["tokens"] = str(exc)
    if ok:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {"status": "unavailable", "checks": checks},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["ops"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 401: {}, 403: {}, 503: {}},
)
async def metrics(request: Request, token: Annotated[Token, Depends(require("admin"))]) -> Response:
    """Messages accepted / sent / deferred / failed / suppressed by brand and event,
    queue depth, the accept-to-sent latency histogram and HTTP request counts. Needs an
    admin token (Prometheus: `authorization: {credentials: nt_…}`)."""
    store: Store = request.app.state.store
    http: HttpMetrics = request.app.state.http_metrics
    w = Writer()
    up = 1
    try:
        write_stats(w, await store.stats())
    except StorageError:
        up = 0
    w.family("notifier_outbox_up", "gauge", "1 when the outbox database answered this scrape.")
    w.sample("notifier_outbox_up", up)
    http.write(w)
    return Response(w.text(), media_type=CONTENT_TYPE)
