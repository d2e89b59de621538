"""One-click unsubscribe tokens (RFC 8058): authenticated, so a link cannot be forged
for another address, and encrypted, so the URL shows nothing of the address, brand or
event (link scanners, proxies and logs see the URL).

A token is ``base64url(0x02 ‖ AES-SIV(brand NUL address NUL event NUL language))``
(RFC 5297, key derived from the secret key, the version byte as associated data). The
language is the mail's, so the confirmation page speaks it whatever the browser asks
for; tokens made before it was added (three fields) still read, without a language. AES-SIV needs no
nonce, so the token is deterministic: the same subscription always gets the same link,
and the URL stays short (17 bytes over the plain text; about 111 characters for
``https://domain.acme.fi/u/…`` and a 24-character address).

Links sent before encryption (``base64url(json).base64url(hmac)``, with a dot) are
still accepted and verified as before, so mail already delivered keeps working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from ..errors import FieldError, ValidationError

_VERSION = b"\x02"
_LABEL = b"notifier/unsubscribe/v2"


@dataclass(frozen=True, slots=True)
class Subscription:
    brand: str
    email: str
    event: str
    language: str | None = None  # the mail's; None in links sent before it was kept


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cipher(secret: bytes) -> AESSIV:
    """AES-256-SIV under a key of its own (never the session or legacy MAC key)."""
    return AESSIV(hmac.new(secret, _LABEL, hashlib.sha512).digest())


def make_token(secret: bytes, sub: Subscription) -> str:
    fields = (sub.brand, sub.email, sub.event) + ((sub.language,) if sub.language else ())
    plain = "\x00".join(fields).encode("utf-8")
    return _b64(_VERSION + _cipher(secret).encrypt(plain, [_VERSION]))


def read_token(secret: bytes, token: str) -> Subscription:
    """The subscription a token names; :class:`ValidationError` if forged or altered."""
    if "." in token:
        return _read_legacy(secret, token)
    try:
        raw = _unb64(token)
    except (ValueError, binascii.Error) as exc:
        raise ValidationError([FieldError("token", "malformed")]) from exc
    if raw[:1] != _VERSION:
        raise ValidationError([FieldError("token", "malformed")])
    try:
        plain = _cipher(secret).decrypt(raw[1:], [_VERSION])
    except (InvalidTag, ValueError) as exc:
        raise ValidationError([FieldError("token", "invalid signature")]) from exc
    parts = plain.decode("utf-8").split("\x00")
    if len(parts) not in (3, 4):
        raise ValidationError([FieldError("token", "malformed")])
    return Subscription(*parts)


def _read_legacy(secret: bytes, token: str) -> Subscription:
    """The first format: signed (HMAC-SHA256, 128 bits) but readable."""
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
