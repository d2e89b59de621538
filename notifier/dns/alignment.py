"""DMARC identifier alignment (RFC 7489 §3.1), with organisational domains from the
Public Suffix List.

"The last two labels" is wrong under multi-label public suffixes: ``aland.fi``,
``org.se`` and ``priv.no`` are suffixes anyone can register beneath, so
``bounce.evil.org.se`` must not count as aligned with ``firma.org.se``. The list ships
inside the ``publicsuffixlist`` package (no network at run time); it is parsed once, on
first use. Names are compared in their A-label form, so an IDN aligns with its punycode
spelling.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList

from ..fields import domain_to_ascii


@functools.cache
def _psl() -> PublicSuffixList:
    """Parsed on first use (~0.1 s): importing notifier should not pay for it."""
    return PublicSuffixList()


def _normalise(domain: str) -> str:
    """Lower-case A-label form without the root dot; a name IDNA refuses is only
    lower-cased and compared as it is (alignment never raises)."""
    try:
        return domain_to_ascii(domain)
    except ValueError:
        return domain.strip().rstrip(".").lower()


@functools.lru_cache(maxsize=4096)
def organisational_domain(domain: str) -> str:
    """The registrable domain of ``domain`` (RFC 7489 §3.2): its public suffix plus one
    label, in A-label form. A public suffix itself (or a single label) is its own
    organisational domain, so it aligns only with itself."""
    name = _normalise(domain)
    return _psl().privatesuffix(name) or name


def aligned(a: str, b: str, strict: bool = False) -> bool:
    """Strict: the same name. Relaxed: the same organisational domain."""
    if strict:
        return _normalise(a) == _normalise(b)
    return organisational_domain(a) == organisational_domain(b)
