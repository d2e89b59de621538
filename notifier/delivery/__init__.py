"""Delivery: the transport interface, its implementations, and the one that a URL names.

Modules, from the wire up: :mod:`.transport` (the narrow interface the worker uses),
:mod:`.replies` (what a server's reply means), :mod:`.envelope` (addresses and body
made safe for the wire), :mod:`.failures` (library errors → DeliveryError → result),
:mod:`.pool` (endpoints and their connection pools), :mod:`.smtp` (the shared SMTP
engine), :mod:`.url` (transport URL parameters), and one module per transport:
:mod:`.relay` (pooled smarthost), :mod:`.direct` (MX lookup), :mod:`.capture`
(.eml files under ``var/mail/``, the default).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .capture import CaptureTransport
from .direct import DirectTransport
from .relay import RelayTransport
from .smtp import SETTING
from .transport import AttemptResult, Envelope, Transport
from .url import redact

__all__ = [
    "AttemptResult",
    "CaptureTransport",
    "DirectTransport",
    "Envelope",
    "RelayTransport",
    "Transport",
    "transport_from_url",
]


def transport_from_url(url: str | None, mail_dir: Path | str) -> Transport:
    """The transport for ``NOTIFIER_SMTP_URL``: unset → capture under ``mail_dir``."""
    if url is None or not url.strip():
        return CaptureTransport(mail_dir)
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("smtp", "smtps"):
        return RelayTransport(url)
    if scheme == "direct":
        return DirectTransport.from_url(url)
    raise ConfigError(
        f"{SETTING}: unsupported URL {redact(url)!r}; use smtp://host:port, "
        "smtps://host:port, direct:// or leave it unset to capture mail locally"
    )
