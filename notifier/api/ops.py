"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ..errors import StorageError
from ..tokens import Token
from .auth import require
from .contract import HealthOut, ReadyOut, error_responses
from .errors import RETRY_AFTER_SECONDS
from .metrics import CONTENT_TYPE, HttpMetrics, exposition
from .store import Stats, Store
from .webhooks import collector as webhook_collector

router = APIRouter()


@router.get(
    "/healthz", operation_id="healthz", summary="Liveness", tags=["ops"], response_model=HealthOut
)
async def healthz() -> dict[str, str]:
    """The process answers. Says nothing about the database (see `/readyz`)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness",
    tags=["ops"],
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "the database is not reachable"}},
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
    operation_id="metrics",
    summary="Prometheus metrics",
    tags=["ops"],
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 503),
    },
)
async def metrics(request: Request, token: Annotated[Token, Depends(require("admin"))]) -> Response:
    """Messages accepted / sent / deferred / failed / suppressed by brand and event,
    queue depth, the accept-to-sent latency histogram and HTTP request counts. Needs an
    admin token (Prometheus: `authorization: {credentials: nt_…}`)."""
    store: Store = request.app.state.store
    http: HttpMetrics = request.app.state.http_metrics
    stats: Stats | None
    try:
        stats = await store.stats()
    except StorageError:
        stats = None
    hooks = await webhook_collector(request)
    # on the event loop, which alone adds to the HTTP counts (and /proc reads are quick)
    return Response(exposition(stats, http, *([hooks] if hooks else [])), media_type=CONTENT_TYPE)
