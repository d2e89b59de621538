"""Outbound webhook HTTP: one signed POST to a registered URL, guarded against SSRF.

The host is resolved here and every address it resolves to must be public (not
loopback, private, link-local — 169.254.169.254 included —, shared, reserved or
multicast) unless ``NOTIFIER_WEBHOOK_ALLOW_PRIVATE=1``; the connection then goes to the
address that was checked (``Host`` header and TLS SNI keep the name), so a DNS answer
that changes between the check and the connect (rebinding) cannot reach anything else.
Redirects are never followed (a 3xx is a failed attempt), the response body is read
only up to :data:`MAX_RESPONSE` bytes, and an attempt is bounded in time as a whole.
The HTTP itself is :mod:`notifier.feedback.client` (keep-alive, one write per request);
its errors are translated into one line of text here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ..errors import FieldError, ValidationError
from ..outbox.webhook_model import WebhookJob, WebhookResult
from .client import MAX_BODY, Client, ConnectFailed, ProtocolError, Target
from .signing import WebhookSecret, sign

#: bytes of a receiver's answer read at most (it is never used, only drained)
MAX_RESPONSE = MAX_BODY
USER_AGENT = "notifier-webhooks/1 (+Standard Webhooks 1.0)"
#: resolved addresses are reused this long (each checked when resolved)
DNS_TTL = 30.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL may not be called (a private address, a bad scheme)."""


def refused_reason(ip: Address) -> str | None:
    """Why ``ip`` may not be called, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in (
        (ip.is_loopback, "a loopback"),
        (ip.is_link_local, "a link-local"),
        (ip.is_private, "a private"),
        (ip.is_multicast, "a multicast"),
        (ip.is_unspecified, "an unspecified"),
        (ip.is_reserved, "a reserved"),
    ):
        if test:
            return f"{ip} is {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def check_url(url: str, allow_private: bool, loc: str = "url") -> str:
    """A URL as registered: http(s), a host, no fragment; an address literal must be
    public unless ``allow_private``. Raises :class:`ValidationError` naming ``loc``."""
    text = url.strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValidationError([FieldError(loc, f"not a URL: {exc}")]) from exc
    if parsed.scheme not in ("http", "https"):
        raise ValidationError([FieldError(loc, "must be an http:// or https:// URL")])
    if not parsed.host:
        raise ValidationError([FieldError(loc, "has no host")])
    if parsed.fragment:
        raise ValidationError([FieldError(loc, "must not have a #fragment")])
    if len(text) > 2000:
        raise ValidationError([FieldError(loc, "is longer than 2000 characters")])
    if not allow_private:
        try:
            ip = ipaddress.ip_address(parsed.host)
        except ValueError:
            ip = None
        reason = refused_reason(ip) if ip is not None else None
        if parsed.host.lower() in ("localhost", "localhost.") or parsed.host.endswith(".localhost"):
            reason = f"{parsed.host} is a loopback name"
        if reason:
            raise ValidationError(
                [FieldError(loc, f"{reason} (NOTIFIER_WEBHOOK_ALLOW_PRIVATE=1 allows it)")]
            )
    return text


def body_of(job: WebhookJob) -> bytes:
    """The payload: ``{"type", "timestamp", "data"}`` — the same bytes on every attempt."""
    from datetime import UTC, datetime

    payload = {
        "type": job.type,
        "timestamp": datetime.fromtimestamp(job.created_at, UTC).isoformat(),
        "data": json.loads(job.data),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class _Url:
    """A registered URL taken apart once (the dispatcher sends to few URLs, many times)."""

    scheme: str
    host: str
    port: int
    path: bytes
    host_header: str


def _split(url: str) -> _Url:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Refused(f"not an http(s) URL: {url}")
    return _Url(
        scheme=parsed.scheme,
        host=parsed.raw_host.decode("ascii"),
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        path=parsed.raw_path or b"/",
        host_header=parsed.netloc.decode("ascii"),
    )


@dataclass
class Sender:
    """Posts webhooks; one per dispatcher (its keep-alive connections are shared)."""

    allow_private: bool = False
    timeout: float = 15.0
    connections: int = 64
    #: when attempts happen, as the outbox counts time (tests move it by hand)
    clock: Callable[[], float] = field(default=time.time)
    #: TLS settings (default: the system's CAs; tests pass their own)
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self._client: Client | None = None
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._urls: dict[str, _Url] = {}

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                connect_timeout=min(5.0, self.timeout), tls=self.tls, keep=self.connections
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host`` (refused ones raise :class:`Refused`)."""
        cached = self._dns.get((host, port))
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise Refused(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            for address in addresses:
                reason = refused_reason(ipaddress.ip_address(address.split("%")[0]))
                if reason:
                    raise Refused(
                        f"{host} resolves to {reason}; refused "
                        "(NOTIFIER_WEBHOOK_ALLOW_PRIVATE=1 allows it)"
                    )
        if not addresses:
            raise Refused(f"{host} has no address")
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _url(self, url: str) -> _Url:
        split = self._urls.get(url)
        if split is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            split = self._urls[url] = _split(url)
        return split

    async def send(self, job: WebhookJob, secrets: list[WebhookSecret]) -> WebhookResult:
        """One attempt; never raises for anything the receiver or the network does."""
        started = time.monotonic()
        at = self.clock()
        body = body_of(job)
        stamp = int(time.time())  # receivers check it against their own clock
        headers = (
            f"content-type: application/json\r\nuser-agent: {USER_AGENT}\r\n"
            f"webhook-id: {job.webhook_id}\r\nwebhook-timestamp: {stamp}\r\n"
            f"webhook-signature: {sign(secrets, job.webhook_id, stamp, body)}\r\n"
        ).encode("ascii")

        def result(
            outcome: str, code: int | None = None, error: str | None = None
        ) -> WebhookResult:
            duration = time.monotonic() - started
            return WebhookResult(job, outcome, at, duration, code, error)

        try:
            async with asyncio.timeout(self.timeout):
                url = self._url(job.url)
                address = (await self._addresses(url.host, url.port))[0]
                target = Target(url.scheme, address, url.port, url.host_header, url.host)
                answer = await self.client().post(target, url.path, headers, body)
        except Refused as exc:
            return result("retry", error=str(exc))
        except TimeoutError:
            return result("retry", error=f"no answer within {self.timeout:g} s")
        except ConnectFailed as exc:
            return result("retry", error=f"cannot connect to {job.url}: {exc}")
        except ssl.SSLError as exc:
            return result("retry", error=f"TLS: {exc.reason or exc}")
        except ProtocolError as exc:
            return result("retry", error=str(exc))
        except OSError as exc:
            return result("retry", error=f"network error: {exc.strerror or exc}")
        code = answer.code
        if 200 <= code < 300:
            return result("delivered", code)
        if code == 410:
            return result("gone", code, "410 Gone: the receiver asked to stop")
        if 300 <= code < 400:
            where = answer.location[:200]
            return result("retry", code, f"HTTP {code}: redirect to {where!r} not followed")
        return result("retry", code, f"HTTP {code}")
