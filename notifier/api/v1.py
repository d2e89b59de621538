"""``/v1``: event intake, message queries and retry, the event catalog, brand DNS checks
(``POST /v1/brands/{id}/dns-check`` records one).

Event bodies are read by hand rather than declared as pydantic parameters: the
token is checked before the body is parsed, a batch is validated item by item (one bad
item never rejects the others), and every error names the field path the way the
pipeline does (``data.expires_at``). The OpenAPI document still describes the bodies
(see :mod:`notifier.api.contract`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from .. import events as catalog
from ..compose.pipeline import Pipeline
from ..dns import checks as dnscheck
from ..dns.verify import outcome_of
from ..errors import (
    FieldError,
    ValidationError,
)
from ..fields import check_tree, decode_json
from ..outbox import Status
from ..signing.keys import KeyStore
from ..tokens import Token
from .auth import check_brand_write, require, visible
from .contract import (
    AcceptedOut,
    BatchOut,
    CatalogOut,
    DNSOut,
    DNSRecordedOut,
    MessageOut,
    MessagePage,
    error_responses,
    request_body,
)
from .errors import ApiError, answer, not_found
from .limits import MAX_BATCH
from .store import Accepted, Store, message_view

router = APIRouter(prefix="/v1")


# --- helpers --------------------------------------------------------------------------


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def read_json(request: Request) -> Any:
    """The body, decoded by the intake's rules (:func:`notifier.fields.decode_json`):
    the caller checks the tree (:func:`notifier.fields.check_tree`) before using it."""
    body = await request.body()
    if not body.strip():
        raise ValidationError([FieldError("body", "a JSON body is required")])
    try:
        return decode_json(body)
    except RecursionError as exc:
        raise ValidationError([FieldError("body", "JSON nested too deeply")]) from exc
    except ValueError as exc:  # not JSON, not UTF-8 (UnicodeDecodeError is one too)
        raise ValidationError([FieldError("body", f"invalid JSON: {exc}")]) from exc


def _checked(tree: Any, prefix: str = "") -> ValidationError | None:
    problems = check_tree(tree, prefix)
    return ValidationError(problems) if problems else None


def _accepted(result: Accepted) -> dict[str, Any]:
    return {"id": result.id, "status": result.status, "language": result.language}


# --- events ---------------------------------------------------------------------------


@router.post(
    "/events",
    status_code=202,
    operation_id="post_event",
    summary="Accept one event",
    response_model=AcceptedOut,
    responses={
        200: {"model": AcceptedOut, "description": "Duplicate: this idempotency key was seen"},
        202: {"model": AcceptedOut, "description": "Accepted: durably queued"},
        **error_responses(401, 403, 409, 413, 422, 503),
    },
    openapi_extra=request_body("EventIn"),
)
async def post_event(
    request: Request, token: Annotated[Token, Depends(require("events:write"))]
) -> JSONResponse:
    """Queue one event. The same `idempotency_key` (per brand) again answers 200 with the
    same id; with a different body it is 409 and nothing is queued."""
    raw = await read_json(request)
    invalid = _checked(raw)
    if invalid:
        raise invalid
    if isinstance(raw, dict):
        denied = check_brand_write(token, raw.get("brand"))
        if denied:
            raise denied
    result = await _store(request).accept(raw)
    return JSONResponse(_accepted(result), status_code=200 if result.duplicate else 202)


def _item_error(index: int, exc: Exception) -> dict[str, Any]:
    """A batch item's error: the code and detail the same event alone would get
    (:func:`notifier.api.errors.answer`). A bug while preparing one item arrives as that
    item's :class:`~notifier.errors.InternalError` (``internal_error``); an outcome
    outside the store's contract is a bug of the store, a 500 for the whole batch."""
    found = answer(exc)
    if found is None:
        raise exc
    return {"index": index, "result": "error", **found.body()}


def _renumber(exc: Exception, positions: list[int]) -> Exception:
    """Store errors name ``events[j]`` by position among the items it was given."""
    if not isinstance(exc, ValidationError):
        return exc
    errors = []
    for err in exc.errors:
        m = re.match(r"^events\[(\d+)\]", err.loc)
        if m and int(m.group(1)) < len(positions):
            loc = f"events[{positions[int(m.group(1))]}]" + err.loc[m.end() :]
        else:
            loc = err.loc
        errors.append(FieldError(loc, err.message))
    return ValidationError(errors)


@router.post(
    "/events/batch",
    operation_id="post_batch",
    summary="Accept up to 1,000 events",
    response_model=BatchOut,
    responses=error_responses(401, 403, 413, 422, 503),
    openapi_extra=request_body("BatchIn"),
)
async def post_batch(
    request: Request, token: Annotated[Token, Depends(require("events:write"))]
) -> JSONResponse:
    """One result per item, in order: `accepted`, `duplicate` or `error` (with the
    item's problems). Valid items are committed in one transaction whatever the others
    hold; if the store fails, nothing is accepted (503)."""
    raw = await read_json(request)
    items = raw.get("events") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise ValidationError([FieldError("events", "must be a list of events")])
    if not items:
        raise ValidationError([FieldError("events", "must hold at least one event")])
    if len(items) > MAX_BATCH:
        raise ValidationError([FieldError("events", f"at most {MAX_BATCH} events per batch")])
    extra = sorted(set(raw) - {"events"})
    if extra:
        raise ValidationError([FieldError(extra[0], "unknown field")])
    limit = request.app.state.settings.max_event_bytes
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[int] = []
    for i, item in enumerate(items):
        # the item's tree first: the size check encodes it, which needs valid text
        problem: Exception | None = _checked(item, f"events[{i}]")
        if problem is None and len(json.dumps(item, ensure_ascii=False).encode()) > limit:
            problem = ApiError(413, f"event over {limit} bytes")
        if problem is None and isinstance(item, dict):
            problem = check_brand_write(token, item.get("brand"))
        if problem is not None:
            results[i] = _item_error(i, problem)
        else:
            valid.append(i)
    if valid:
        outcomes = await _store(request).accept_batch([items[i] for i in valid])
        for i, outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, Exception):
                results[i] = _item_error(i, _renumber(outcome, valid))
            else:
                results[i] = {
                    "index": i,
                    "result": "duplicate" if outcome.duplicate else "accepted",
                    **_accepted(outcome),
                }
    done = [r for r in results if r is not None]
    counts = {
        k: sum(1 for r in done if r["result"] == k) for k in ("accepted", "duplicate", "error")
    }
    return JSONResponse(
        {
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "errors": counts["error"],
            "results": done,
        }
    )


@router.get(
    "/events/catalog",
    operation_id="get_catalog",
    summary="The event catalog",
    response_model=CatalogOut,
    responses=error_responses(401, 503),
)
async def get_catalog(request: Request, token: Annotated[Token, Depends(require())]) -> Response:
    """Every event with its JSON Schema (the `data` object) and realistic sample data."""
    body: bytes = request.app.state.catalog_json
    return Response(body, media_type="application/json")


def catalog_document() -> bytes:
    """The catalog document (the same the CLI's ``events --json`` prints), encoded once."""
    return json.dumps(catalog.catalog_document(), ensure_ascii=False, default=str).encode()


# --- messages -------------------------------------------------------------------------


MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _visible_message(token: Token, message: dict[str, Any] | None) -> dict[str, Any]:
    if message is None or not token.sees(str(message.get("brand"))):
        raise not_found("no such message")
    return message_view(message, full=token.admin)


@router.get(
    "/messages/{message_id}",
    operation_id="get_message",
    summary="One message",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_message(
    message_id: MessageId,
    request: Request,
    token: Annotated[Token, Depends(require("messages:read"))],
) -> JSONResponse:
    """State, attempts with the SMTP replies, Message-ID and the chosen language."""
    return JSONResponse(_visible_message(token, await _store(request).message(message_id)))


@router.get(
    "/messages",
    operation_id="list_messages",
    summary="Find messages",
    response_model=MessagePage,
    responses=error_responses(401, 403, 422, 503),
)
async def list_messages(
    request: Request,
    token: Annotated[Token, Depends(require("messages:read"))],
    brand: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[Status | None, Query()] = None,
    event: Annotated[str | None, Query(max_length=80)] = None,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    domain: Annotated[
        str | None,
        Query(max_length=253, description="The domain name the mail is about (any case, IDN)."),
    ] = None,
) -> JSONResponse:
    """Newest first; pass `next_cursor` back as `cursor` for the next page (each page
    costs the same however deep: the cursor is the last id seen). A reseller token
    only ever sees its own brand."""
    if token.brand is not None:
        if brand is not None and brand != token.brand:
            return JSONResponse({"items": [], "next_cursor": None})
        brand = token.brand
    items, next_cursor = await _store(request).messages(
        brand=brand,
        status=status,
        event=event,
        recipient=recipient,
        cursor=cursor,
        limit=limit,
        domain=domain,
    )
    return JSONResponse(
        {"items": [message_view(m, full=token.admin) for m in items], "next_cursor": next_cursor}
    )


@router.post(
    "/messages/{message_id}/retry",
    operation_id="retry_message",
    summary="Retry a message",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def retry_message(
    message_id: MessageId,
    request: Request,
    token: Annotated[Token, Depends(require("events:write"))],
) -> JSONResponse:
    """Queue a deferred or failed message again, now (same Message-ID)."""
    store = _store(request)
    _visible_message(token, await store.message(message_id))
    return JSONResponse(_visible_message(token, await store.retry(message_id)))


# --- brands ---------------------------------------------------------------------------


@router.get(
    "/brands/{brand_id}/dns",
    operation_id="get_brand_dns",
    summary="A brand's DNS check",
    response_model=DNSOut,
    responses=error_responses(401, 404, 422, 503),
)
async def get_brand_dns(
    brand_id: Annotated[str, Path(max_length=40)],
    request: Request,
    token: Annotated[Token, Depends(require())],
) -> dict[str, Any]:
    """DKIM, SPF, DMARC, alignment and link-domain checks: `ok`, `fail` (with the record
    to publish) or `unknown` (DNS could not tell)."""
    visible(token, brand_id, "no such brand")
    pipeline = _pipeline(request)
    try:
        brand = pipeline.brands.get(brand_id)
    except ValidationError:
        raise not_found("no such brand") from None
    settings = request.app.state.settings
    checks = await run_in_threadpool(
        dnscheck.check_brand, brand, settings, KeyStore(settings.keys_path)
    )
    return {
        "brand": brand.id,
        "ok": dnscheck.all_ok(checks),
        "checks": [c.as_dict() for c in checks],
    }


@router.post(
    "/brands/{brand_id}/dns-check",
    operation_id="check_brand_dns",
    summary="Check a brand's DNS now and record it",
    response_model=DNSRecordedOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def check_brand_dns(
    brand_id: Annotated[str, Path(max_length=40)],
    request: Request,
    token: Annotated[Token, Depends(require("admin"))],
) -> dict[str, Any]:
    """Run the DNS checks now and record the outcome, as the periodic check does: a
    brand that passes becomes verified (its held mail is queued and it signs as itself
    from the next message); a verified brand falls back after two failing checks;
    `unknown` (DNS did not answer) changes nothing. Admin scope."""
    try:
        brand = _pipeline(request).brands.get(brand_id)
    except ValidationError:
        raise not_found("no such brand") from None
    checks, recorded = await _store(request).check_dns(brand)
    return {
        "brand": brand.id,
        "ok": dnscheck.all_ok(checks),
        "outcome": outcome_of(checks),
        "previous": recorded.previous,
        "changed": recorded.changed,
        "released": recorded.released,
        "state": recorded.now.as_dict(),
        "checks": [c.as_dict() for c in checks],
    }
