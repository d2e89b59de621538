"""The relay transport: everything through one smarthost, on a pool of persistent connections."""

from __future__ import annotations

import ssl
from urllib.parse import unquote, urlsplit

from ..config import Secret
from ..errors import DeliveryError
from .envelope import prepare
from .failures import result_from_error
from .pool import Endpoint, Limits
from .smtp import SMTPEngine, Timeouts
from .transport import AttemptResult, Envelope
from .url import POOL_PARAMS, TIMEOUT_PARAMS, URLParams

__all__ = ["RELAY_TIMEOUTS", "RelayTransport"]

RELAY_TIMEOUTS = Timeouts()


def _pick(explicit: float | None, from_url: float | None, default: float) -> float:
    if explicit is not None:
        return explicit
    return default if from_url is None else from_url


class RelayTransport(SMTPEngine):
    """Deliver everything through one smarthost, on a pool of persistent connections.

    URLs: ``smtp://host[:25]`` (STARTTLS when offered), ``smtp://host:587?starttls=required``
    (never plaintext), ``smtps://host[:465]`` (implicit TLS), with optional
    ``user:password@`` for AUTH (only over TLS, or to a loopback host). Parameters:
    ``starttls``, ``cafile``, ``helo``, ``pool_size``, ``max_per_connection``,
    ``max_age``, ``max_idle`` and ``connect_timeout``/``command_timeout``/
    ``data_timeout``/``final_timeout``; keyword arguments win over the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        max_per_connection: int | None = None,
        max_age: float | None = None,
        max_idle: float | None = None,
        timeouts: Timeouts | None = None,
        tls_context: ssl.SSLContext | None = None,
        helo: str | None = None,
    ) -> None:
        params = URLParams(url, {"starttls", "cafile"} | POOL_PARAMS | TIMEOUT_PARAMS)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            params.fail(str(exc))
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            params.fail(f"relay URL must start with smtp:// or smtps://, not {scheme!r}")
        if not parts.hostname:
            params.fail("no host")
        if parts.path not in ("", "/") or parts.fragment:
            params.fail("unexpected path or fragment")
        implicit = scheme == "smtps"
        starttls = params.starttls("opportunistic")
        if implicit and "starttls" in params.values:
            params.fail("starttls does not apply to smtps:// (TLS from the first byte)")
        if tls_context is None:
            cafile = params.text("cafile")
            try:
                tls_context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                params.fail(f"cannot load cafile {cafile!r}: {exc}")
        host = parts.hostname
        port = port or (465 if implicit else 25)
        username = unquote(parts.username) if parts.username is not None else None
        password = Secret(unquote(parts.password)) if parts.password is not None else None
        self.url = params.url  # redacted
        self.endpoint = Endpoint(
            host=host,
            port=port,
            label=f"{host}:{port}",
            tls_name=host,
            implicit_tls=implicit,
            starttls=starttls,
            username=username,
            password=password,
        )
        limits = Limits(
            size=int(_pick(pool_size, params.number("pool_size", int), 4)),
            max_per_connection=int(
                _pick(max_per_connection, params.number("max_per_connection", int), 100)
            ),
            max_age=_pick(max_age, params.number("max_age", float), 300.0),
            max_idle=_pick(max_idle, params.number("max_idle", float), 60.0),
        )
        super().__init__(
            limits=limits,
            timeouts=timeouts or params.timeouts(RELAY_TIMEOUTS),
            helo=helo or params.text("helo"),
            tls_context=tls_context,
        )

    def __repr__(self) -> str:
        return f"RelayTransport({self.url!r}, pool_size={self.limits.size})"

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            self._check_open()
            self._sweep()
            return await self._deliver(self.endpoint, prepare(envelope))
        except DeliveryError as exc:
            return result_from_error(exc, envelope)
