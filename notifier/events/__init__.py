"""The event catalog: one typed schema per domain-lifecycle or account event.

The event names are the API contract. Each :class:`EventSpec` says who the mail is for
(``registrant`` mail goes out in the reseller's brand, ``reseller`` mail in the
platform's own), whether it is a legally required notice (``mandatory``: no
unsubscribe, never suppressed), the data it needs (a pydantic model), realistic sample
data for previews, and what the notice must say (``brief``, for template authors).

The models are in :mod:`.models`, the specs and samples in :mod:`.catalog`; this module
looks events up, validates their data and builds the catalog document that the API and
the CLI both show.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import pydantic

from ..errors import FieldError, UnknownEvent, ValidationError, from_pydantic
from .catalog import SPECS
from .models import Audience, EventData, EventSpec
from .titles import title

CATALOG: dict[str, EventSpec] = {spec.name: spec for spec in SPECS}


def get(name: str) -> EventSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownEvent(name, sorted(CATALOG)) from None


def catalog_document() -> dict[str, Any]:
    """Every event with its JSON Schema and sample: one document for every door, so
    ``GET /v1/events/catalog`` and ``notifier events --json`` cannot drift apart."""
    return {"events": [spec.describe() for spec in CATALOG.values()]}


def validate_data(name: str, data: Any, prefix: str = "data") -> EventData:
    """Validate ``data`` for event ``name``; errors name the field path (``data.expires_at``)."""
    spec = get(name)
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError(prefix, "must be an object")])
    try:
        return spec.model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc.errors(include_url=False), prefix) from exc


def sample(name: str) -> EventData:
    spec = get(name)
    return spec.model.model_validate(spec.sample)


def as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


__all__ = [
    "CATALOG",
    "Audience",
    "EventData",
    "EventSpec",
    "as_datetime",
    "catalog_document",
    "get",
    "sample",
    "title",
    "validate_data",
]
