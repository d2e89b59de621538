"""Delivery: the transport interface and its SMTP implementations."""

from .smtp import CaptureTransport, DirectTransport, RelayTransport, transport_from_url
from .transport import AttemptResult, Envelope, Transport

__all__ = [
    "AttemptResult",
    "CaptureTransport",
    "DirectTransport",
    "Envelope",
    "RelayTransport",
    "Transport",
    "transport_from_url",
]
