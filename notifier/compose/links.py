"""White-label link rewriting: platform hosts → the brand's link domain.

Every URL on a platform host (``https://manage.nordname.com/...``), in HTML attributes
or in plain text, is rewritten to the brand's link domain with path, query and
fragment kept. Third-party links and ``mailto:`` are left alone; the platform brand is
not rewritten. One compiled pattern per host list, one ``sub`` per part.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from functools import lru_cache

from .render import Rendered


@lru_cache(maxsize=16)
def _pattern(hosts: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(h) for h in sorted(hosts, key=len, reverse=True))
    # "//", the host, an optional port, then a URL delimiter. Starting on the literal
    # "//" lets the regex engine skip ahead quickly; the scheme is handled by the caller.
    return re.compile(
        r"//(?:" + alternatives + r")(?::\d+)?"
        r"(?=[/?#\s\"'<>)\],;]|[.:!?](?:[\s<\"']|$)|$)",
        re.IGNORECASE,
    )


class Rewriter:
    def __init__(self, platform_hosts: Iterable[str], link_host: str) -> None:
        self.pattern = _pattern(tuple(h.lower() for h in platform_hosts))
        self.link_host = link_host

    def rewrite_text(self, text: str) -> str:
        out: list[str] = []
        pos = 0
        for match in self.pattern.finditer(text):
            start = match.start()
            for scheme in ("https:", "http:"):
                if text[max(start - len(scheme), 0) : start].lower() == scheme:
                    start -= len(scheme)
                    break
            out.append(text[pos:start])
            out.append(f"https://{self.link_host}")
            pos = match.end()
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def rewrite(self, rendered: Rendered) -> Rendered:
        return dataclasses.replace(
            rendered,
            text=self.rewrite_text(rendered.text),
            html=self.rewrite_text(rendered.html),
            subject=self.rewrite_text(rendered.subject),
        )


def leaks(blob: str, names: Iterable[str], hosts: Iterable[str]) -> list[str]:
    """Platform names or hosts found in ``blob`` (case-insensitive)."""
    low = blob.lower()
    return sorted({w for w in (*names, *hosts) if w.lower() in low})
