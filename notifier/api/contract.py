"""The OpenAPI contract: response and request models for ``/openapi.json`` only.

Routes read event bodies by hand (see :mod:`notifier.api.v1`) and return plain dicts,
so nothing here validates a request or reshapes an answer: these models exist so that
generated clients get typed models, short operation ids and the project's real error
shape. Request bodies are documented as a discriminated union on ``event`` built from
the event catalog's data models, so every event's ``data`` has its own schema.
``tests/api/test_contract.py`` checks that real answers match these models.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, RootModel, create_model
from pydantic.json_schema import models_json_schema

from .. import events as catalog
from ..compose.pipeline import EventIn as Envelope
from ..outbox import Status
from .errors import CODES
from .limits import MAX_BATCH

# --- errors ------------------------------------------------------------------------------


class FieldProblem(BaseModel):
    """One invalid field, named by its path in the request."""

    field: str = Field(examples=["data.expires_at"])
    message: str = Field(examples=["Input should be a valid datetime"])


class ErrorOut(BaseModel):
    """Every 4xx and 5xx: a code, and a sentence or (422) the list of field problems."""

    error: str = Field(examples=["not_found"])
    detail: str | list[FieldProblem]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with :class:`ErrorOut`."""
    return {c: {"model": ErrorOut, "description": CODES[c].replace("_", " ")} for c in codes}


# --- events ------------------------------------------------------------------------------


class AcceptedOut(BaseModel):
    id: int
    status: str = Field(examples=["queued"])
    language: str = Field(examples=["fi"])


class BatchItemOut(BaseModel):
    """One batch item's outcome; an error carries what the event alone would get."""

    index: int
    result: Literal["accepted", "duplicate", "error"]
    id: int | None = None
    status: str | None = None
    language: str | None = None
    error: str | None = None
    detail: str | list[FieldProblem] | None = None


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    errors: int
    results: list[BatchItemOut]


def _model_name(event: str) -> str:
    """``domain.renewal_reminder`` → ``DomainRenewalReminderEvent``."""
    words = event.replace(".", "_").split("_")
    return "".join(w[:1].upper() + w[1:] for w in words) + "Event"


def _event_model(spec: catalog.EventSpec) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        _model_name(spec.name),
        __base__=Envelope,
        __doc__=spec.summary,
        event=(Literal[spec.name], ...),  # type: ignore[arg-type]
        data=(spec.model, ...),
    )
    return model


#: one envelope model per catalog event, ``event`` fixed to its name
EVENT_MODELS: tuple[type[BaseModel], ...] = tuple(
    _event_model(spec) for spec in catalog.CATALOG.values()
)

#: any catalog event, told apart by ``event`` (a union over the tuple above)
AnyEvent = Annotated[
    Union[EVENT_MODELS],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="event"),
]


class EventIn(RootModel[AnyEvent]):
    """One event: ``event`` names it and decides the schema of ``data``."""


class BatchIn(BaseModel):
    """Up to 1,000 events; each is validated on its own."""

    events: list[AnyEvent] = Field(min_length=1, max_length=MAX_BATCH)


def event_example(name: str, brand: str = "acme", key: str | None = None) -> dict[str, Any]:
    """An event as a client would post it, with the catalog's sample data."""
    body: dict[str, Any] = {
        "event": name,
        "brand": brand,
        "recipient": {"email": "aino.virtanen@example.fi", "name": "Aino Virtanen"},
        "data": json.loads(json.dumps(dict(catalog.CATALOG[name].sample), default=str)),
    }
    if key is not None:
        body["idempotency_key"] = key
    return body


def _event_examples() -> dict[str, Any]:
    return {
        name: {"summary": spec.summary, "value": event_example(name, key=f"{name}-1")}
        for name, spec in catalog.CATALOG.items()
    }


def _batch_examples() -> dict[str, Any]:
    names = list(catalog.CATALOG)[:2]
    return {
        "two_events": {
            "summary": "Two events in one request",
            "value": {"events": [event_example(n, key=f"{n}-2") for n in names]},
        }
    }


def request_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body by hand."""
    examples = _event_examples() if schema == "EventIn" else _batch_examples()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "examples": examples,
                }
            },
        }
    }


# --- messages ------------------------------------------------------------------------------


class AttemptOut(BaseModel):
    """One delivery attempt with the SMTP server's reply."""

    at: datetime
    outcome: Literal["sent", "transient", "permanent"]
    host: str | None
    code: int | None
    enhanced: str | None
    text: str
    possible_duplicate: bool
    worker: str | None = Field(None, description="admin tokens only")
    sha256: str | None = Field(None, description="admin tokens only")


class ReportOut(BaseModel):
    """A bounce, complaint or auto-reply received for the message (``notifier inbound``),
    kept as evidence: its raw bytes have this SHA-256."""

    id: int
    kind: Literal["hard_bounce", "soft_bounce", "complaint", "auto_reply", "other", "unparsable"]
    received_at: datetime
    enhanced: str | None = Field(None, examples=["5.1.1"])
    code: int | None = Field(None, examples=[550])
    diagnostic: str | None
    feedback_type: str | None
    outcome: str = Field(examples=["bounced+suppressed"])
    sha256: str


class MessageOut(BaseModel):
    """A message's state, attempts, Message-ID and chosen language. Fields marked
    "admin tokens only" are absent for other tokens."""

    id: int
    brand: str
    sender_brand: str
    event: str
    mandatory: bool
    domain: str | None
    recipient: str
    language: str
    status: Status
    reason: str | None
    idempotency_key: str | None
    message_id: str = Field(examples=["<0123456789abcdef0123456789abcdef@acme.fi>"])
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    deadline: datetime
    sent_at: datetime | None
    possible_duplicate: bool
    dkim_domain: str | None
    dkim_selector: str | None
    attempt_log: list[AttemptOut]
    reports: list[ReportOut] = Field(
        default_factory=list, description="bounces and complaints received for it"
    )
    sign_brand: str | None = Field(None, description="admin tokens only")
    mail_from: str | None = Field(None, description="admin tokens only")
    rcpt_to: str | None = Field(None, description="admin tokens only")
    data_sha256: str | None = Field(None, description="admin tokens only")
    lease_expires_at: datetime | None = Field(None, description="admin tokens only")
    sent_sha256: str | None = Field(None, description="admin tokens only")


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


# --- catalog, brands, ops ------------------------------------------------------------------


class CatalogEventOut(BaseModel):
    name: str = Field(examples=["domain.renewal_reminder"])
    audience: str
    mandatory: bool
    summary: str
    brief: str
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of `data`")
    sample: dict[str, Any]


class CatalogOut(BaseModel):
    events: list[CatalogEventOut]


class DNSCheckOut(BaseModel):
    id: str = Field(examples=["dmarc"])
    title: str
    status: Literal["ok", "fail", "unknown"]
    name: str
    found: str | None = None
    expected: str | None = Field(None, description="what to publish (zone-file form)")
    message: str = ""
    required: bool = True


class DNSOut(BaseModel):
    brand: str
    ok: bool
    checks: list[DNSCheckOut]


DNSState = Literal["unverified", "verified", "broken-pending"]


class BrandDNSStateOut(BaseModel):
    brand: str
    state: DNSState | None = Field(description="null until the first check is recorded")
    verified: bool | None = Field(description="the brand sends from and signs for its domain")
    outcome: Literal["ok", "fail", "unknown"] | None
    checked_at: datetime | None
    changed_at: datetime | None
    failures: int = Field(description="consecutive failing checks (unknown does not count)")
    next_check_at: datetime | None
    records: list[DNSCheckOut]


class DNSRecordedOut(BaseModel):
    brand: str
    ok: bool
    outcome: Literal["ok", "fail", "unknown"]
    previous: DNSState
    changed: bool
    released: int = Field(description="held messages queued because the brand became verified")
    state: BrandDNSStateOut
    checks: list[DNSCheckOut]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


# --- the document --------------------------------------------------------------------------

#: FastAPI's own 422 models; every operation documents :class:`ErrorOut` instead
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")


def openapi(app: FastAPI) -> dict[str, Any]:
    """``app.openapi``: FastAPI's document plus the request-body models, with every
    error answer documented as :class:`ErrorOut`."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _, defs = models_json_schema(
        [(EventIn, "validation"), (BatchIn, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.get("$defs", {}).items():
        if name in components and components[name] != definition:
            raise RuntimeError(f"OpenAPI component {name!r} defined twice, differently")
        components[name] = definition
    fastapi_error = "#/components/schemas/HTTPValidationError"
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if media.get("schema", {}).get("$ref") == fastapi_error:
                        media["schema"] = {"$ref": "#/components/schemas/ErrorOut"}
    for name in _FASTAPI_ERRORS:
        components.pop(name, None)
    app.openapi_schema = schema
    return schema
