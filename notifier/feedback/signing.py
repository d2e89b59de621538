"""Standard Webhooks 1.0 signatures and the endpoint secrets behind them.

A secret is ``whsec_`` + base64 of 32 random bytes; a signature is
``v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>``, and the
``webhook-signature`` header carries one per secret, space-separated (two while a
rotated-out secret is still honoured). Secrets are stored sealed (AES-GCM under a key
derived from ``NOTIFIER_SECRET_KEY``): a copy of the database alone cannot forge a
webhook. They are shown once, when made, and never logged (:class:`WebhookSecret`'s
repr hides them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import NotifierError

PREFIX = "whsec_"
_LABEL = b"notifier webhook endpoint secrets v1"
_SEALED = "v1:"


class SecretError(NotifierError):
    """A stored endpoint secret cannot be opened (``NOTIFIER_SECRET_KEY`` changed?)."""


class WebhookSecret(str):
    """A ``whsec_…`` string whose repr never shows it."""

    def __repr__(self) -> str:
        return "WebhookSecret('whsec_…')"

    @property
    def key(self) -> bytes:
        return base64.b64decode(self[len(PREFIX) :])


def new_secret() -> WebhookSecret:
    return WebhookSecret(PREFIX + base64.b64encode(os.urandom(32)).decode("ascii"))


def sign(secrets: Sequence[WebhookSecret], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,…`` entry per secret."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(s.key, signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def _aead(master: bytes) -> AESGCM:
    return AESGCM(hmac.new(master, _LABEL, hashlib.sha256).digest())


def seal(master: bytes, secret: WebhookSecret) -> str:
    """``secret`` encrypted for the database (a fresh nonce each time)."""
    nonce = os.urandom(12)
    box = _aead(master).encrypt(nonce, secret.encode("ascii"), _LABEL)
    return _SEALED + base64.b64encode(nonce + box).decode("ascii")


def unseal(master: bytes, sealed: str) -> WebhookSecret:
    if not sealed.startswith(_SEALED):
        raise SecretError("a stored webhook secret is in an unknown format")
    raw = base64.b64decode(sealed[len(_SEALED) :])
    try:
        plain = _aead(master).decrypt(raw[:12], raw[12:], _LABEL)
    except InvalidTag as exc:
        raise SecretError(
            "a stored webhook secret cannot be decrypted: NOTIFIER_SECRET_KEY is not the "
            "one it was sealed with (rotate the endpoint's secret)"
        ) from exc
    return WebhookSecret(plain.decode("ascii"))
