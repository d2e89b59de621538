"""The direct transport: look up the recipient domain's MX hosts and deliver to them."""

from __future__ import annotations

import logging
import random
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from ..dns.resolver import (
    NameserverError,
    NoSystemResolver,
    as_async,
    async_resolver,
    parse_nameserver,
)
from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from .envelope import Prepared, prepare
from .failures import SessionError, result_from_error, translate
from .pool import STARTTLS_MODES, Endpoint, Limits, StartTLS
from .smtp import SETTING, SMTPEngine, Timeouts
from .transport import AttemptResult, Envelope
from .url import POOL_PARAMS, TIMEOUT_PARAMS, URLParams

__all__ = ["DIRECT_TIMEOUTS", "DirectTransport"]

log = logging.getLogger(__name__)

DIRECT_TIMEOUTS = Timeouts(command=300.0)


@dataclass(frozen=True, slots=True)
class _Cached:
    value: list[str]
    expires: float


class DirectTransport(SMTPEngine):
    """Deliver to the recipient domain's MX hosts (RFC 5321 §5), pooled per host.

    MX records in preference order (equal preferences shuffled), the domain's own A/AAAA
    when it has no MX; NXDOMAIN → permanent (5.4.4), null MX "." → permanent (5.1.10),
    SERVFAIL or timeout → transient (4.4.3). A host that refuses, times out or fails the
    session setup is skipped for the next address/MX in the same attempt (at most
    ``max_addresses``). STARTTLS is opportunistic and unauthenticated, like Postfix's
    ``may`` level: certificates are not verified, a failed handshake is retried in clear.

    ``nameserver`` ("127.0.0.1:5353") or ``resolver`` (dnspython, sync or async)
    replace the system resolver; ``port`` replaces 25 (tests).
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver | dns.resolver.Resolver | None = None,
        *,
        nameserver: str | None = None,
        port: int = 25,
        helo: str | None = None,
        pool_size: int = 5,
        max_per_connection: int = 100,
        max_age: float = 300.0,
        max_idle: float = 30.0,
        timeouts: Timeouts | None = None,
        starttls: StartTLS = "opportunistic",
        max_addresses: int = 5,
        dns_lifetime: float = 10.0,
    ) -> None:
        if starttls not in STARTTLS_MODES:
            raise ConfigError(f"{SETTING}: starttls must be one of {', '.join(STARTTLS_MODES)}")
        if not 0 < port < 65536 or max_addresses < 1:
            raise ConfigError(f"{SETTING}: port must be 1-65535 and max_addresses >= 1")
        self.resolver = _resolver(resolver, nameserver, dns_lifetime)
        self.port = port
        self.starttls: StartTLS = starttls
        self.max_addresses = max_addresses
        self._mx_cache: dict[str, _Cached] = {}
        self._ip_cache: dict[str, _Cached] = {}
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(
            limits=Limits(pool_size, max_per_connection, max_age, max_idle),
            timeouts=timeouts or DIRECT_TIMEOUTS,
            helo=helo,
            tls_context=context,
        )

    @classmethod
    def from_url(cls, url: str) -> DirectTransport:
        """``direct://[?port=25&nameserver=host:port&starttls=...&pool_size=5&...]``."""
        params = URLParams(
            url,
            {"port", "nameserver", "starttls", "max_addresses"} | POOL_PARAMS | TIMEOUT_PARAMS,
        )
        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/"):
            params.fail("direct:// takes no host or path, only parameters")
        nameserver = params.text("nameserver")
        if nameserver is not None:
            try:
                parse_nameserver(nameserver, names=False)
            except NameserverError:
                params.fail(_bad_nameserver(nameserver))
        return cls(
            nameserver=nameserver,
            port=int(params.number("port", int) or 25),
            helo=params.text("helo"),
            pool_size=int(params.number("pool_size", int) or 5),
            max_per_connection=int(params.number("max_per_connection", int) or 100),
            max_age=params.number("max_age", float) or 300.0,
            max_idle=params.number("max_idle", float) or 30.0,
            timeouts=params.timeouts(DIRECT_TIMEOUTS),
            starttls=params.starttls("opportunistic"),
            max_addresses=int(params.number("max_addresses", int) or 5),
        )

    def __repr__(self) -> str:
        return f"DirectTransport(port={self.port}, pool_size={self.limits.size})"

    async def mx_hosts(self, domain: str) -> list[str]:
        """Mail hosts for ``domain`` in the order to try them (RFC 5321 §5.1)."""
        now = time.monotonic()
        cached = self._mx_cache.get(domain)
        if cached is not None and cached.expires > now:
            return list(cached.value)
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NoAnswer:
            return [domain]  # no MX: the domain itself is the implicit MX
        except dns.exception.DNSException as exc:
            raise translate(exc, stage="mx", host=domain) from exc
        records = list(answer)
        if any(r.exchange == dns.name.root for r in records):
            raise PermanentDeliveryError(
                f"{domain}: domain accepts no mail (null MX, RFC 7505)",
                code=556,
                enhanced="5.1.10",
                host=domain,
            )
        records.sort(key=lambda r: (r.preference, random.random()))
        hosts = [r.exchange.to_text(omit_final_dot=True).lower() for r in records]
        if answer.rrset is not None and answer.rrset.ttl > 0:
            self._mx_cache[domain] = _Cached(hosts, now + min(answer.rrset.ttl, 300))
        return list(hosts)

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of a mail host."""
        now = time.monotonic()
        cached = self._ip_cache.get(host)
        if cached is not None and cached.expires > now:
            return list(cached.value)
        found: list[str] = []
        ttl = 300
        failure: BaseException | None = None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NoAnswer:
                continue
            except dns.exception.DNSException as exc:
                if isinstance(exc, dns.resolver.NXDOMAIN):
                    raise translate(exc, stage="address-lookup", host=host) from exc
                failure = exc
                continue
            found.extend(r.to_text() for r in answer)
            if answer.rrset is not None:
                ttl = min(ttl, answer.rrset.ttl)
        if not found:
            if failure is not None:
                raise translate(failure, stage="address-lookup", host=host) from failure
            raise PermanentDeliveryError(f"{host}: no address records", enhanced="5.4.4", host=host)
        if ttl > 0:
            self._ip_cache[host] = _Cached(found, now + ttl)
        return found

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            self._check_open()
            self._sweep()
            msg = prepare(envelope)
            return await self._send_direct(msg)
        except DeliveryError as exc:
            return result_from_error(exc, envelope)

    async def _send_direct(self, msg: Prepared) -> AttemptResult:
        domain = msg.rcpt.domain
        errors: list[DeliveryError] = []
        tried = 0
        for mx in await self.mx_hosts(domain):
            try:
                ips = await self.addresses(mx)
            except DeliveryError as exc:
                errors.append(exc)
                continue
            for ip in ips:
                if tried >= self.max_addresses:
                    break
                tried += 1
                label = f"{mx}[{ip}]:{self.port}"
                ep = Endpoint(
                    host=ip,
                    port=self.port,
                    label=label,
                    tls_name=mx,
                    starttls=self.starttls,
                    plaintext_fallback=self.starttls == "opportunistic",
                )
                try:
                    return await self._deliver(ep, msg)
                except SessionError as exc:
                    log.info("%s: %s; trying the next mail host", label, exc)
                    errors.append(exc)
        if not errors:
            raise TransientDeliveryError(f"{domain}: no mail host could be tried", host=domain)
        transient = [e for e in errors if not isinstance(e, PermanentDeliveryError)]
        raise transient[-1] if transient else errors[0]


def _bad_nameserver(value: str) -> str:
    return f"nameserver must be IP[:port], not {value!r}"


def _resolver(
    resolver: dns.asyncresolver.Resolver | dns.resolver.Resolver | None,
    nameserver: str | None,
    lifetime: float,
) -> dns.asyncresolver.Resolver:
    """The resolver given (a sync one gets async queries), or one for ``nameserver``."""
    if isinstance(resolver, dns.asyncresolver.Resolver):
        return resolver
    if resolver is not None:
        return as_async(resolver)
    try:  # an IP address only: no blocking name lookup while configuring
        return async_resolver(nameserver, lifetime=lifetime, names=False)
    except NameserverError as exc:
        raise ConfigError(f"{SETTING}: {_bad_nameserver(str(nameserver))}") from exc
    except NoSystemResolver as exc:
        raise ConfigError(f"{SETTING}: no usable system resolver: {exc}") from exc
