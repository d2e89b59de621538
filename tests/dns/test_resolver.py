"""One nameserver syntax (``HOST``, ``HOST:PORT``, ``[V6]:PORT``) and the resolvers from it."""

from __future__ import annotations

import dns.asyncresolver
import dns.resolver
import pytest

from notifier.dns.resolver import (
    NameserverError,
    as_async,
    async_resolver,
    parse_nameserver,
    sync_resolver,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        (" 127.0.0.1:5353 ", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_parse_nameserver(value: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.1:99999", "port out of range"),
        ("127.0.0.1:0", "port out of range"),
        ("127.0.0.1:dns", "port must be a number"),
        ("[::1]:x", "port must be a number"),
        (":53", "without a host"),
    ],
)
def test_bad_nameserver_says_why(value: str, problem: str) -> None:
    with pytest.raises(NameserverError, match=problem):
        parse_nameserver(value)


def test_names_are_resolved_unless_refused() -> None:
    host, port = parse_nameserver("localhost:5353")  # from /etc/hosts, no DNS needed
    assert host in ("127.0.0.1", "::1") and port == 5353
    assert parse_nameserver("[::1]:53", names=False) == ("::1", 53)
    with pytest.raises(NameserverError, match="must be an IP address"):
        parse_nameserver("localhost", names=False)


def test_resolvers_ask_the_given_server_within_the_lifetime() -> None:
    sync = sync_resolver("127.0.0.1:5353", lifetime=3.0, timeout=1.0)
    assert isinstance(sync, dns.resolver.Resolver)
    assert (sync.nameservers, sync.port, sync.lifetime, sync.timeout) == (
        ["127.0.0.1"],
        5353,
        3.0,
        1.0,
    )
    fast = async_resolver("[::1]:53", lifetime=0.5)
    assert isinstance(fast, dns.asyncresolver.Resolver)
    assert (fast.nameservers, fast.port, fast.lifetime, fast.timeout) == (["::1"], 53, 0.5, 0.5)
    twin = as_async(sync)
    assert isinstance(twin, dns.asyncresolver.Resolver)
    assert (twin.nameservers, twin.port, twin.lifetime, twin.timeout) == (
        ["127.0.0.1"],
        5353,
        3.0,
        1.0,
    )
