"""Nameserver settings and dnspython resolvers, shared by the DNS checks and direct delivery.

A nameserver setting is written the same way everywhere: ``HOST``, ``HOST:PORT`` or
``[V6]:PORT`` (a bare IPv6 address means port 53). Problems are raised as
:class:`NameserverError` / :class:`NoSystemResolver` without context; each caller
translates them into its own :class:`~notifier.errors.NotifierError` naming the setting
the user gave (``--nameserver``, ``NOTIFIER_SMTP_URL``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.resolver

__all__ = [
    "NameserverError",
    "NoSystemResolver",
    "as_async",
    "async_resolver",
    "parse_nameserver",
    "sync_resolver",
]

DNS_PORT = 53
_BRACKETED = re.compile(r"\[([^\]]*)\](?::(.*))?")

R = TypeVar("R", dns.resolver.Resolver, dns.asyncresolver.Resolver)


class NameserverError(ValueError):
    """A nameserver setting that is not ``HOST[:PORT]`` or ``[V6]:PORT``; says why."""


class NoSystemResolver(Exception):
    """No nameserver was given and the system's resolver configuration is unusable."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_nameserver(value: str, *, names: bool = True) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` → (address, port).

    With ``names`` a host name is resolved to its first address (a blocking lookup);
    without, only IP addresses are accepted.
    """
    text = value.strip()
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, None
    port = DNS_PORT
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise NameserverError(f"nameserver port must be a number: {value!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise NameserverError(f"nameserver port out of range: {value!r}")
    if not host:
        raise NameserverError(f"nameserver without a host: {value!r}")
    if _is_ip(host):
        return host, port
    if not names:
        raise NameserverError(f"nameserver must be an IP address, not {value!r}")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NameserverError(f"cannot resolve nameserver {host!r}: {exc}") from exc
    return str(info[0][4][0]), port


def _build(
    kind: type[R],
    nameserver: str | None,
    lifetime: float,
    timeout: float | None,
    names: bool,
) -> R:
    if nameserver is not None:
        host, port = parse_nameserver(nameserver, names=names)
        resolver = kind(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        try:
            resolver = kind()
        except dns.exception.DNSException as exc:
            raise NoSystemResolver(str(exc)) from exc
    resolver.lifetime = lifetime
    resolver.timeout = min(resolver.timeout, lifetime) if timeout is None else timeout
    return resolver


def sync_resolver(
    nameserver: str | None = None,
    *,
    lifetime: float,
    timeout: float | None = None,
    names: bool = True,
) -> dns.resolver.Resolver:
    """A blocking resolver asking ``nameserver`` (or the system's servers).

    ``lifetime`` bounds a whole lookup, ``timeout`` one try (default: the system's,
    at most ``lifetime``).
    """
    return _build(dns.resolver.Resolver, nameserver, lifetime, timeout, names)


def async_resolver(
    nameserver: str | None = None,
    *,
    lifetime: float,
    timeout: float | None = None,
    names: bool = True,
) -> dns.asyncresolver.Resolver:
    """The asyncio twin of :func:`sync_resolver`."""
    return _build(dns.asyncresolver.Resolver, nameserver, lifetime, timeout, names)


def as_async(resolver: dns.resolver.Resolver) -> dns.asyncresolver.Resolver:
    """The same servers, port and timeouts as ``resolver``, with asynchronous queries."""
    result = dns.asyncresolver.Resolver(configure=False)
    result.nameservers = list(resolver.nameservers)
    result.port = resolver.port
    result.timeout = resolver.timeout
    result.lifetime = resolver.lifetime
    return result
