"""Transport URLs (``NOTIFIER_SMTP_URL``): query parameters read once, passwords redacted.

Shared by the relay (``smtp://``, ``smtps://``), direct (``direct://``) and the factory
in :mod:`notifier.delivery`; every problem is a :class:`~notifier.errors.ConfigError`
naming the setting and the URL without its password.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NoReturn
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError
from .pool import STARTTLS_MODES, StartTLS
from .smtp import SETTING, Timeouts

__all__ = ["POOL_PARAMS", "TIMEOUT_PARAMS", "URLParams", "redact"]


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and repr."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    netloc, query_mark, query = netloc.partition("?")
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    return f"{scheme}{sep}{netloc}{query_mark}{query}{slash}{tail}"


class URLParams:
    """Query parameters of a transport URL, each read once; leftovers are an error."""

    def __init__(self, url: str, allowed: set[str]) -> None:
        self.url = redact(url)
        self.values: dict[str, str] = {}
        try:
            pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            self.fail(str(exc))
        for key, value in pairs:
            if key not in allowed:
                self.fail(f"unknown parameter {key!r} (known: {', '.join(sorted(allowed))})")
            if key in self.values:
                self.fail(f"parameter {key!r} given twice")
            self.values[key] = value

    def fail(self, problem: str) -> NoReturn:
        raise ConfigError(f"{SETTING}: {problem} in {self.url}")

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    def number(self, name: str, kind: type[int] | type[float]) -> float | None:
        raw = self.values.get(name)
        if raw is None:
            return None
        try:
            value = kind(raw)
        except ValueError:
            self.fail(f"{name} must be a number, not {raw!r}")
        if value <= 0:
            self.fail(f"{name} must be positive")
        return value

    def timeouts(self, base: Timeouts) -> Timeouts:
        changes = {
            name: value
            for name in ("connect", "command", "data", "final")
            if (value := self.number(f"{name}_timeout", float)) is not None
        }
        return replace(base, **changes)

    def starttls(self, default: StartTLS) -> StartTLS:
        raw = self.values.get("starttls")
        if raw is None:
            return default
        for mode in STARTTLS_MODES:
            if raw.lower() == mode:
                return mode
        self.fail(f"starttls must be one of {', '.join(STARTTLS_MODES)}, not {raw!r}")


POOL_PARAMS = {"pool_size", "max_per_connection", "max_age", "max_idle", "helo"}
TIMEOUT_PARAMS = {"connect_timeout", "command_timeout", "data_timeout", "final_timeout"}
