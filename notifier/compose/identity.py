"""What "the same request" and "the same occasion" mean: the hashes behind idempotency
keys and natural-key de-duplication (``domain.renewal_reminder`` for one domain and
expiry date is one message, however often the registry posts it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from ..fields import domain_to_ascii
from .render import Event

_PLAIN = frozenset({str, int, float, bool, type(None)})


def _canon(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: checked first, the hash is on every accept
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, BaseModel):
        return {k: _canon(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def _digest(value: Any) -> str:
    text = json.dumps(_canon(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_hash(event: Event) -> str:
    """What "the same request" means for an idempotency key: the same event, brand,
    recipient and data (values compared, not spelling: ``"12.5"`` equals ``12.50``)."""
    r = event.recipient
    return _digest(
        {
            "event": event.name,
            "brand": event.brand_id,
            "recipient": {"email": r.email.lower(), "name": r.name, "language": r.language},
            "data": event.data,
        }
    )


def event_domain(event: Event) -> str | None:
    value = getattr(event.data, "domain", None)
    if not isinstance(value, str):
        return None
    try:
        return domain_to_ascii(value)
    except ValueError:
        return value.lower()


def natural_key(event: Event, domain: str | None) -> str | None:
    """brand + event + domain + the spec's occasion fields; ``None`` when the event has
    no occasion (every such event is a new message)."""
    if not event.spec.occasion:
        return None
    occasion = [getattr(event.data, name, None) for name in event.spec.occasion]
    return _digest([event.brand_id, event.name, domain, occasion])
