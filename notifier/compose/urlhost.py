"""Which host a browser would open: the WHATWG URL host rules, for link rewriting.

A browser does not read a URL's host the way it is written: it drops userinfo
(``evil@``), percent-decodes (``%2E``), maps the name through UTS #46 (fullwidth
letters and dots, ``。``, upper case), ignores a port, treats ``\\`` as ``/`` and
reads ``0x7f.1`` as an IPv4 address. Comparing text misses all of that, so the
decision is made by ada (the WHATWG-conformant parser behind Node.js, through the
``ada-url`` binding). Only authorities that are not plain lower-case names pay for it:
a plain ``name.tld`` (or ``name.tld:port``) already *is* its WHATWG host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ada_url import parse_url

# A plain LDH name whose last label is not numeric (so no IPv4 parsing applies),
# optionally with a port: WHATWG host parsing leaves it as it is, lower-cased.
_PLAIN = re.compile(r"^([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z][a-z0-9-]*)(?::[0-9]{0,5})?$")


def whatwg_host(authority: str) -> str | None:
    """The host a browser reads from ``authority`` (what follows ``https://`` up to the
    path), without trailing dots (DNS treats ``name.`` as ``name``); ``None`` if a
    browser would refuse the URL."""
    for candidate in (authority, _without_port(authority)):
        try:
            host = parse_url(f"https://{candidate}/", attributes=("hostname",))["hostname"]
        except ValueError:
            continue
        return str(host).rstrip(".")
    return None


def _without_port(authority: str) -> str:
    """An invalid port (``:99999``, ``:0x``) makes the URL invalid, but a linkifier or
    a lenient client still shows the host: decide on the host without it."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host
    return host.partition(":")[0]


class HostMatcher:
    """Decides whether an authority leads to one of a set of hosts."""

    def __init__(self, hosts: Iterable[str]) -> None:
        normalised = {whatwg_host(h) or h.lower().rstrip(".") for h in hosts}
        self.hosts = frozenset(normalised)

    def canonical(self, authority: str) -> bool:
        """``authority`` names one of the hosts plainly: lower-case or upper-case
        letters, dots, an optional port; nothing a reader could mistake."""
        m = _PLAIN.match(authority.lower()) if authority.isascii() else None
        return m is not None and m.group(1) in self.hosts

    @staticmethod
    def plain(authority: str) -> bool:
        """``authority`` is a plain name (see ``_PLAIN``): WHATWG host parsing leaves it
        as it is, lower-cased; so it is a platform host exactly when it is in the set."""
        return _PLAIN.match(authority.lower()) is not None

    def matches(self, authority: str) -> bool:
        """A browser given ``https://{authority}/`` would open one of the hosts."""
        low = authority.lower()
        m = _PLAIN.match(low)
        if m is not None:
            return m.group(1) in self.hosts
        if not low:
            return False
        return whatwg_host(authority) in self.hosts
