"""White-label link rewriting: platform hosts → the brand's link domain.

Every link that a browser or a mail client's linkifier would open on a platform host
(``https://manage.nordname.com/...``) is rewritten to the brand's link domain, with
userinfo, port and scheme dropped and path, query and fragment kept. The host is
decided the way a browser decides it (:mod:`.urlhost`), so ``evil@``, ``%2E``,
trailing dots, fullwidth dots, ``\\`` for ``/`` and upper case do not hide a platform
link. What counts as a link: ``http:``/``https:`` in any case and with any number of
slashes or backslashes, anything after ``//`` or ``\\\\`` (scheme-relative, or any
scheme), and ``www.`` at the start of a word (mail clients linkify it). In HTML,
character references are decoded and tabs and newlines in attribute values are
dropped before deciding, as a browser does. Third-party links and ``mailto:`` are left
alone; the platform brand is not rewritten.

Cheap where it matters: one regex finds the places a link can start; a plain
``name.tld`` authority is decided by a set lookup, and only unusual ones go to the
WHATWG parser.
"""

from __future__ import annotations

import dataclasses
import html as htmllib
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from ..errors import FieldError, ValidationError, field_path
from .render import Rendered
from .urlhost import HostMatcher

# where a link can start: two slashes (any mix with backslashes), a special scheme
# without them (``https:host`` is ``https://host`` to a browser), or ``www.``
_START = re.compile(r"[/\\]{2}|[Hh][Tt][Tt][Pp][Ss]?:|(?<![\w.@-])[Ww][Ww][Ww]\.")
# where a link ends in text: white space, quotes, angle brackets
_END = re.compile(r"[\s\"'<>`]")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_SLASHES = re.compile(r"[/\\]*")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# what a linkifier leaves out at the end of a link ("see https://x.com.")
_TRAILING = ".,;:!?)]}*"
# an HTML attribute value with a tab or a line break in it (a browser drops those
# from a URL; a text scan would stop there)
_ATTR_BREAK = re.compile(r"""=(\s*)(?:"([^"\t\n\r]*[\t\n\r][^"]*)"|'([^'\t\n\r]*[\t\n\r][^']*)')""")


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A link to a platform host: ``text[start:end]`` is its scheme, slashes,
    userinfo, host and port; ``text[host_start:end]`` its authority."""

    start: int
    host_start: int
    end: int


def _link_start(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    """(where the link starts, where its authority starts) for a start match."""
    s = m.start()
    first = text[s]
    if first in "/\\":
        start = s
        if s > 0 and text[s - 1] == ":":  # a scheme before the slashes, whichever
            j = s - 1
            while j > 0 and s - j < 32 and text[j - 1] in _SCHEME_CHARS:
                j -= 1
            if j < s - 1 and text[j].isalpha():
                start = j
        return start, _SLASHES.match(text, s).end()  # type: ignore[union-attr]
    if first in "wW":
        return s, s
    if s > 0 and text[s - 1] in _SCHEME_CHARS:  # "xhttps:" is another scheme
        return None
    return s, _SLASHES.match(text, m.end()).end()  # type: ignore[union-attr]


def find(text: str, matcher: HostMatcher) -> Iterator[Found]:
    """Every link in ``text`` that a browser would open on one of ``matcher``'s hosts."""
    skip_to = 0
    for m in _START.finditer(text):
        if m.start() < skip_to:
            continue
        where = _link_start(text, m)
        if where is None:
            continue
        start, host_start = where
        end_m = _END.search(text, host_start)
        token_end = end_m.start() if end_m else len(text)
        auth_m = _AUTHORITY_END.search(text, host_start, token_end)
        end = auth_m.start() if auth_m else token_end
        authority = text[host_start:end]
        skip_to = host_start
        if end == token_end:  # nothing follows the host: mind trailing punctuation
            core = authority.rstrip(_TRAILING)
            if core != authority and core and matcher.matches(core):
                skip_to = host_start + len(core)
                yield Found(start, host_start, skip_to)
                continue
        if authority and matcher.matches(authority):
            skip_to = end
            yield Found(start, host_start, end)


@lru_cache(maxsize=16)
def _matcher(hosts: tuple[str, ...]) -> HostMatcher:
    return HostMatcher(hosts)


class Rewriter:
    def __init__(self, platform_hosts: Iterable[str], link_host: str) -> None:
        self.matcher = _matcher(tuple(sorted(h.lower() for h in platform_hosts)))
        self.link_host = link_host

    def rewrite_text(self, text: str, *, html: bool = False) -> str:
        """``text`` with platform links moved to the link domain; ``html``: decode
        character references in links and attribute values first."""
        if html:
            text = _ATTR_BREAK.sub(self._attribute, text)
        out: list[str] = []
        pos = 0
        for f in find(text, self.matcher):
            out.append(text[pos : f.start])
            out.append(f"https://{self.link_host}")
            pos = f.end
        if out:
            out.append(text[pos:])
            text = "".join(out)
        if html and "&" in text:
            text = self._references(text)
        return text

    def _attribute(self, m: re.Match[str]) -> str:
        """An attribute value with tabs or line breaks: decide on it as a browser
        reads it, and write it back (escaped) only if a link was rewritten."""
        value = m.group(2) if m.group(2) is not None else m.group(3)
        read = re.sub(r"[\t\n\r]", "", htmllib.unescape(value))
        new = self.rewrite_text(read)
        if new == read:
            return m.group(0)
        return f'={m.group(1)}"{htmllib.escape(new, quote=True)}"'

    def _references(self, text: str) -> str:
        """Links whose text has character references (``manage&#46;nordname``): a
        browser shows and opens them decoded."""
        out: list[str] = []
        pos = 0
        for m in _START.finditer(text):
            if m.start() < pos:
                continue
            token_end_m = _END.search(text, m.end())
            token_end = token_end_m.start() if token_end_m else len(text)
            start = m.start()
            while start > pos and text[start - 1] in _SCHEME_CHARS | {"&", "#", ";", ":"}:
                start -= 1
            token = text[start:token_end]
            if "&" not in token:
                continue
            read = re.sub(r"[\t\n\r]", "", htmllib.unescape(token))
            new = self.rewrite_text(read)
            if new != read:
                out.append(text[pos:start])
                out.append(htmllib.escape(new, quote=True))
                pos = token_end
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def rewrite(self, rendered: Rendered) -> Rendered:
        return dataclasses.replace(
            rendered,
            text=self.rewrite_text(rendered.text),
            html=self.rewrite_text(rendered.html, html=True),
            subject=self.rewrite_text(rendered.subject),
        )


def leaks(blob: str, names: Iterable[str], hosts: Iterable[str]) -> list[str]:
    """Platform names or hosts found in ``blob`` (case-insensitive), and links a
    browser would open on a platform host however they are written."""
    low = blob.lower()
    found = {w for w in (*names, *hosts) if w.lower() in low}
    matcher = _matcher(tuple(sorted(h.lower() for h in hosts)))
    for text in (blob, htmllib.unescape(blob) if "&" in blob else ""):
        for f in find(text, matcher):
            found.add(text[f.start : f.end])
    return sorted(found)


def refuse_disguised(hosts: Iterable[str], values: Iterable[tuple[str, Any]]) -> None:
    """Refuse event data that links to a platform host in a disguised form (userinfo,
    percent-encoding, mapped or fullwidth characters, a trailing dot, backslashes, no
    scheme): no producer needs one, and a reader could be misled. ``values`` are
    (field path, value) pairs; plain platform links pass and are rewritten at render."""
    matcher = _matcher(tuple(sorted(h.lower() for h in hosts)))
    errors = [
        FieldError(loc, "links to a platform host in a disguised form; send it plainly")
        for path, value in values
        for loc, text in _strings(path, value)
        if _disguised(text, matcher)
    ]
    if errors:
        raise ValidationError(errors)


def _disguised(text: str, matcher: HostMatcher) -> bool:
    for f in find(text, matcher):
        scheme = text[f.start : f.host_start].lower()
        if scheme not in ("https://", "http://") or not matcher.canonical(
            text[f.host_start : f.end]
        ):
            return True
    return False


def _strings(path: str, value: Any) -> Iterator[tuple[str, str]]:
    """Every string in an event's data, with its field path (``data.items[0].domain``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(field_path([name], path), getattr(value, name))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(field_path([i], path), item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(field_path([str(key)], path), item)
