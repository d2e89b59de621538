"""``/v1/webhooks``: status webhook endpoints for internal services (admin scope), and
their figures for ``/metrics``.

The ``whsec_…`` secret is in the answer of creating an endpoint and of rotating its
secret, and nowhere else. Bad input is a 422 naming each field.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from ..errors import FieldError, StorageError, ValidationError
from ..feedback import endpoints as ops
from ..outbox.events import EVENT_TYPES
from ..outbox.webhook_model import Endpoint
from ..outbox.webhooks import EndpointNotFound
from ..tokens import Token
from .auth import require
from .contract import error_responses
from .errors import not_found

if TYPE_CHECKING:
    from ..outbox import Outbox

router = APIRouter(prefix="/v1/webhooks", tags=["v1"])
EndpointId = Annotated[int, Path(ge=1, le=2**53)]
Admin = Annotated[Token, Depends(require("admin"))]


class EndpointIn(BaseModel):
    url: str = Field(max_length=2000, examples=["https://registry.internal/hooks/mail"])
    events: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1, examples=[["*"]])
    brand: str | None = Field(None, max_length=40)
    description: str = Field("", max_length=500)


class EndpointOut(BaseModel):
    id: int
    url: str
    events: list[str]
    brand: str | None
    description: str
    state: str = Field(examples=["enabled"])
    disabled_reason: str | None
    disabled_at: str | None
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None
    last_error: str | None
    pending: int
    created_at: str | None
    rotation_ends_at: str | None


class EndpointList(BaseModel):
    items: list[EndpointOut]


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="`whsec_…`: shown here once, never again")


class DisableIn(BaseModel):
    reason: str = Field("disabled by ops", max_length=200)


class RotateIn(BaseModel):
    grace: str | None = Field(None, max_length=20, examples=["24h"])


class ReplayIn(BaseModel):
    since: str = Field(max_length=40, examples=["2026-11-29T10:00:00Z", "2h"])
    until: str | None = Field(None, max_length=40)
    endpoint: int | None = Field(None, ge=1, le=2**53)


class ReplayOut(BaseModel):
    queued: int


def _outbox(request: Request) -> Outbox:
    """The outbox behind the app's store (503 when it could not be opened)."""
    store = request.app.state.store
    try:
        outbox: Outbox = store.outbox
    except AttributeError as exc:
        raise StorageError(getattr(store, "reason", "the outbox is unavailable")) from exc
    return outbox


async def _call(request: Request, fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except EndpointNotFound:
        raise not_found("no such webhook endpoint") from None


@router.post(
    "",
    operation_id="create_webhook",
    summary="Register a webhook endpoint",
    status_code=201,
    response_model=EndpointWithSecret,
    responses=error_responses(401, 403, 422, 503),
)
async def create_webhook(body: EndpointIn, request: Request, token: Admin) -> dict[str, Any]:
    """The answer carries the endpoint's signing secret: the only time it is shown."""
    settings = request.app.state.settings
    known = [b.id for b in request.app.state.pipeline.brands.all()]
    outbox = await run_in_threadpool(_outbox, request)
    endpoint, secret = await run_in_threadpool(
        lambda: ops.add(
            outbox,
            settings.secret(),
            url=body.url,
            events=body.events,
            brand=body.brand,
            known_brands=known,
            description=body.description,
            allow_private=settings.webhook_allow_private,
        )
    )
    return {**endpoint.as_dict(), "secret": str(secret)}


@router.get(
    "",
    operation_id="list_webhooks",
    summary="Webhook endpoints",
    response_model=EndpointList,
    responses=error_responses(401, 403, 503),
)
async def list_webhooks(request: Request, token: Admin) -> dict[str, Any]:
    """Every endpoint with its state, failing-since, last success and disabled reason."""
    outbox = await run_in_threadpool(_outbox, request)
    found: list[Endpoint] = await run_in_threadpool(outbox.endpoints)
    return {"items": [e.as_dict() for e in found]}


@router.get(
    "/{endpoint_id}",
    operation_id="get_webhook",
    summary="A webhook endpoint",
    response_model=EndpointOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_webhook(endpoint_id: EndpointId, request: Request, token: Admin) -> dict[str, Any]:
    outbox = await run_in_threadpool(_outbox, request)
    endpoint: Endpoint = await _call(request, outbox.endpoint, endpoint_id)
    return endpoint.as_dict()


@router.post(
    "/{endpoint_id}/disable",
    operation_id="disable_webhook",
    summary="Stop delivering to an endpoint",
    response_model=EndpointOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def disable_webhook(
    endpoint_id: EndpointId, body: DisableIn, request: Request, token: Admin
) -> dict[str, Any]:
    outbox = await run_in_threadpool(_outbox, request)
    e: Endpoint = await _call(request, outbox.set_endpoint_state, endpoint_id, False, body.reason)
    return e.as_dict()


@router.post(
    "/{endpoint_id}/enable",
    operation_id="enable_webhook",
    summary="Deliver to an endpoint again",
    response_model=EndpointOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def enable_webhook(endpoint_id: EndpointId, request: Request, token: Admin) -> dict[str, Any]:
    outbox = await run_in_threadpool(_outbox, request)
    e: Endpoint = await _call(request, outbox.set_endpoint_state, endpoint_id, True)
    return e.as_dict()


@router.post(
    "/{endpoint_id}/rotate-secret",
    operation_id="rotate_webhook_secret",
    summary="A new signing secret",
    response_model=EndpointWithSecret,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def rotate_webhook_secret(
    endpoint_id: EndpointId, body: RotateIn, request: Request, token: Admin
) -> dict[str, Any]:
    """The old secret keeps signing (a second signature) for `grace` (default 24h)."""
    from ..config import parse_duration

    settings = request.app.state.settings
    grace = settings.webhook_rotation_grace
    if body.grace is not None:
        try:
            grace = parse_duration(body.grace)
        except Exception as exc:
            raise ValidationError([FieldError("grace", "a duration such as 24h")]) from exc
    outbox = await run_in_threadpool(_outbox, request)
    e, secret = await _call(request, ops.rotate, outbox, settings.secret(), endpoint_id, grace)
    return {**e.as_dict(), "secret": str(secret)}


@router.post(
    "/replay",
    operation_id="replay_webhooks",
    summary="Send a time range of events again",
    response_model=ReplayOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def replay_webhooks(body: ReplayIn, request: Request, token: Admin) -> dict[str, int]:
    """Every event written in `[since, until)` to the endpoints subscribed to it, with its
    original `webhook-id` (receivers dedupe on it)."""
    now = time.time()
    since = ops.parse_time(body.since, now, "since")
    until = now + 1 if body.until is None else ops.parse_time(body.until, now, "until")
    if until <= since:
        raise ValidationError([FieldError("until", "must be after since")])
    outbox = await run_in_threadpool(_outbox, request)
    queued: int = await _call(request, outbox.replay_webhooks, since, until, body.endpoint)
    return {"queued": queued}


# --- /metrics ----------------------------------------------------------------------------


class WebhookCollector(Collector):
    """Endpoints (state, failing for how long, pending) and delivery counters."""

    def __init__(self, endpoints: list[Endpoint], counters: dict[tuple[int, str], float]) -> None:
        self.endpoints = endpoints
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        up = GaugeMetricFamily(
            "notifier_webhook_endpoint_enabled",
            "1 while a webhook endpoint is enabled; 0 once disabled (see reason).",
            labels=("endpoint", "reason"),
        )
        failing = GaugeMetricFamily(
            "notifier_webhook_endpoint_failing_seconds",
            "How long an endpoint has failed without a success (0: healthy).",
            labels=("endpoint",),
        )
        pending = GaugeMetricFamily(
            "notifier_webhook_deliveries_pending",
            "Webhook deliveries waiting for an attempt, by endpoint.",
            labels=("endpoint",),
        )
        for e in self.endpoints:
            key = str(e.id)
            reason = "" if e.state == "enabled" else _reason_label(e.disabled_reason)
            up.add_metric((key, reason), 1 if e.state == "enabled" else 0)
            failing.add_metric((key,), max(0.0, now - e.failing_since) if e.failing_since else 0)
            pending.add_metric((key,), e.pending)
        yield up
        yield failing
        yield pending
        done = CounterMetricFamily(
            "notifier_webhook_deliveries",
            "Webhook attempts by endpoint and outcome (delivered, failed: given up, retried).",
            labels=("endpoint", "outcome"),
        )
        for (endpoint, name), value in sorted(self.counters.items()):
            done.add_metric((str(endpoint), name), value)
        yield done


def _reason_label(reason: str | None) -> str:
    text = reason or ""
    if "410" in text:
        return "gone"
    if text.startswith("failing"):
        return "failing"
    return "ops"


async def collector(request: Request) -> Collector | None:
    """The webhook figures for one scrape (None when the outbox did not answer)."""
    try:
        outbox = await run_in_threadpool(_outbox, request)
        endpoints, counters = await run_in_threadpool(outbox.webhook_metrics)
    except StorageError:
        return None
    return WebhookCollector(endpoints, counters)
