"""Fixtures of the DNS verification tests (``world``: brands, keys and a live zone)."""

from tests.dns.support import dns_key_dir, world

__all__ = ["dns_key_dir", "world"]
