"""Endpoint operations shared by ``notifier webhook …`` and the admin API: input checked
here (each problem names its field), secrets made and sealed here, shown to the caller
once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import FieldError, ValidationError
from ..outbox.events import EVENT_TYPES
from ..outbox.webhook_model import Endpoint
from .http import check_url
from .signing import WebhookSecret, new_secret, seal

if TYPE_CHECKING:
    from ..outbox import Outbox


def parse_events(value: str | Iterable[str], loc: str = "events") -> tuple[str, ...]:
    """``message.sent,message.failed`` (or a list) → known event types, in catalog
    order; ``*`` is every type."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise ValidationError([FieldError(loc, "name at least one event (or *)")])
    if "*" in items:
        return EVENT_TYPES
    unknown = [v for v in items if v not in EVENT_TYPES]
    if unknown:
        raise ValidationError(
            [FieldError(loc, f"unknown event {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")]
        )
    return tuple(e for e in EVENT_TYPES if e in items)


def check_brand(brand: str | None, known: Sequence[str], loc: str = "brand") -> str | None:
    if brand is None or brand == "":
        return None
    if brand not in known:
        raise ValidationError(
            [FieldError(loc, f"unknown brand {brand!r}; known: {', '.join(known)}")]
        )
    return brand


def parse_time(text: str, now: float, loc: str) -> float:
    """An ISO 8601 time (``2026-11-29T10:00:00Z``; no zone = UTC) or a duration ago
    (``2h``, ``3d``)."""
    from ..config import parse_duration

    value = text.strip()
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - parse_duration(value, loc)
        except Exception as exc:
            raise ValidationError(
                [FieldError(loc, f"{value!r} is neither an ISO 8601 time nor a duration (2h)")]
            ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def add(
    outbox: Outbox,
    master: bytes,
    *,
    url: str,
    events: str | Iterable[str],
    brand: str | None,
    known_brands: Sequence[str],
    description: str = "",
    allow_private: bool = False,
) -> tuple[Endpoint, WebhookSecret]:
    """Register an endpoint; the secret is returned here and never again."""
    errors: list[FieldError] = []
    checked: list[object] = []
    for check in (
        lambda: check_url(url, allow_private),
        lambda: parse_events(events),
        lambda: check_brand(brand, known_brands),
    ):
        try:
            checked.append(check())
        except ValidationError as exc:
            errors.extend(exc.errors)
    if len(description) > 500:
        errors.append(FieldError("description", "is longer than 500 characters"))
    if errors:
        raise ValidationError(errors)
    clean_url, types, clean_brand = checked
    assert isinstance(clean_url, str) and isinstance(types, tuple)
    assert clean_brand is None or isinstance(clean_brand, str)
    secret = new_secret()
    endpoint = outbox.add_endpoint(clean_url, types, clean_brand, seal(master, secret), description)
    return endpoint, secret


def rotate(
    outbox: Outbox, master: bytes, endpoint: int, grace: float
) -> tuple[Endpoint, WebhookSecret]:
    """A new secret; the old one signs too (a second signature) for ``grace`` seconds."""
    if grace < 0:
        raise ValidationError([FieldError("grace", "must not be negative")])
    secret = new_secret()
    return outbox.rotate_endpoint_secret(endpoint, seal(master, secret), grace), secret
