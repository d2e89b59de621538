"""One-click unsubscribe tokens (RFC 8058): signed, so a link cannot be forged for
another address, and opaque, so it does not show the address in the URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from ..errors import FieldError, ValidationError


@dataclass(frozen=True, slots=True)
class Subscription:
    brand: str
    email: str
    event: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, sub: Subscription) -> str:
    payload = json.dumps([sub.brand, sub.email, sub.event], separators=(",", ":")).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def read_token(secret: bytes, token: str) -> Subscription:
    try:
        payload_b64, mac_b64 = token.split(".")
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except (ValueError, TypeError) as exc:
        raise ValidationError([FieldError("token", "malformed")]) from exc
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise ValidationError([FieldError("token", "invalid signature")])
    brand, email, event = json.loads(payload)
    return Subscription(brand, email, event)


def url(link_host: str, token: str) -> str:
    return f"https://{link_host}/u/{token}"
