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

# where a link can start: two slashes, "http:" or "https:" in any case (with or
# without slashes: ``https:host`` is ``https://host`` to a browser), "www."
_TWO_SLASHES = re.compile(r"//")
_SCHEME = re.compile(r":(?:(?<=[hH][tT][tT][pP]:)|(?<=[hH][tT][tT][pP][sS]:))")
_WWW = re.compile(r"\.(?<=[wW][wW][wW]\.)")
# where a link ends in text: white space, quotes, angle brackets
_END = re.compile(r"[\s\"'<>`]")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_SLASHES = re.compile(r"[/\\]*")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# what a linkifier leaves out at the end of a link ("see https://x.com.")
_TRAILING = ".,;:!?)]}*"
_BREAKS = re.compile(r"[\t\n\r]")
_C0_SPACE = "".join(map(chr, range(33)))


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A link to a platform host: ``text[start:end]`` is its scheme, slashes,
    userinfo, host and port; ``text[host_start:end]`` its authority."""

    start: int
    host_start: int
    end: int


def _positions(text: str) -> list[tuple[int, int]]:
    """(where, where the slashes or scheme end) of each place a link can start, in
    order. Each pattern starts on a literal (``//``, ``:``, ``.``) so that the regex
    engine skips ahead at memchr speed; a case-insensitive or alternating pattern
    costs ten times more on a text with non-ASCII letters."""
    out = [(m.start(), m.end()) for m in _TWO_SLASHES.finditer(text)]
    if "\\" in text:
        i = text.find("\\")
        while i >= 0:
            if text.startswith(("/", "\\"), i + 1):
                out.append((i, i + 2))
            elif i > 0 and text[i - 1] == "/":
                out.append((i - 1, i + 1))
            i = text.find("\\", i + 1)
    out.extend(
        (m.start() - 4 - (text[m.start() - 1] in "sS"), m.end()) for m in _SCHEME.finditer(text)
    )
    for m in _WWW.finditer(text):
        w = m.start() - 3
        if w == 0 or not (text[w - 1].isalnum() or text[w - 1] in "_.@-"):
            out.append((w, m.end()))
    out.sort()
    return out


def _link_start(text: str, s: int, match_end: int) -> tuple[int, int] | None:
    """(where the link starts, where its authority starts) for a start position."""
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
    return s, _SLASHES.match(text, match_end).end()  # type: ignore[union-attr]


def _decide(text: str, host_start: int, token_end: int, matcher: HostMatcher) -> int | None:
    """Where the authority starting at ``host_start`` ends, if it leads to a platform host."""
    auth_m = _AUTHORITY_END.search(text, host_start, token_end)
    end = auth_m.start() if auth_m else token_end
    authority = text[host_start:end]
    if end == token_end:  # nothing follows the host: mind trailing punctuation
        core = authority.rstrip(_TRAILING)
        if core != authority and core and matcher.matches(core):
            return host_start + len(core)
    if authority and matcher.matches(authority):
        return end
    return None


def _token_end(text: str, host_start: int) -> int:
    end_m = _END.search(text, host_start)
    return end_m.start() if end_m else len(text)


def find(text: str, matcher: HostMatcher) -> Iterator[Found]:
    """Every link in ``text`` that a browser would open on one of ``matcher``'s hosts."""
    skip_to = 0
    for s, match_end in _positions(text):
        if s < skip_to:
            continue
        where = _link_start(text, s, match_end)
        if where is None:
            continue
        start, host_start = where
        skip_to = host_start
        end = _decide(text, host_start, _token_end(text, host_start), matcher)
        if end is not None:
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
        """``text`` with platform links moved to the link domain. ``html``: a link
        with character references, or an attribute value with tabs or line breaks,
        is decided as a browser reads it (decoded, breaks dropped)."""
        out: list[str] = []
        pos = skip_to = 0
        for s, match_end in _positions(text):
            if s < skip_to:
                continue
            where = _link_start(text, s, match_end)
            if where is None:
                continue
            start, host_start = where
            skip_to = host_start
            token_end = _token_end(text, host_start)
            if html and (
                "&" in text[start:token_end]
                or (token_end < len(text) and text[token_end].isspace())
            ):
                span = self._html_span(text, pos, start, token_end)
                if span is not None:
                    a, b, new = span
                    out.append(text[pos:a])
                    out.append(new)
                    pos = skip_to = b
                    continue
            end = _decide(text, host_start, token_end, self.matcher)
            if end is not None:
                out.append(text[pos:start])
                out.append(f"https://{self.link_host}")
                pos = skip_to = end
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def _html_span(
        self, text: str, pos: int, start: int, token_end: int
    ) -> tuple[int, int, str] | None:
        """The decoded reading of a link in HTML, rewritten: (from, to, new text), or
        ``None`` if it does not lead to a platform host. Inside a quoted attribute
        value the whole value is one URL to a browser: tabs and breaks dropped, white
        space at the ends stripped, spaces inside kept (in userinfo, say)."""
        a, b = max(start, pos), token_end
        whole = False
        tag = text.rfind("<", 0, start)
        if tag > text.rfind(">", 0, start):
            quote = max(text.rfind('"', tag, start), text.rfind("'", tag, start))
            q = text[quote] if quote >= 0 else ""
            if q and text.count(q, tag, start) % 2 == 1:  # an opening quote
                close = text.find(q, start)
                if close >= 0:
                    a, b, whole = max(quote + 1, pos), close, True
        if not whole and text.find("&", a, b) < 0:
            return None
        read = _BREAKS.sub("", htmllib.unescape(text[a:b]))
        new = self._rewrite_value(read.strip(_C0_SPACE)) if whole else None
        if new is None:
            new = self.rewrite_text(read)
            if new == read:
                return None
        return a, b, htmllib.escape(new, quote=True)

    def _rewrite_value(self, value: str) -> str | None:
        """An attribute value that is one URL, rewritten if it leads to a platform host."""
        for s, match_end in _positions(value)[:1]:
            where = _link_start(value, s, match_end)
            if where is None or where[0] != 0:
                return None
            end = _decide(value, where[1], len(value), self.matcher)
            if end is not None:
                return f"https://{self.link_host}{value[end:]}"
        return None

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
    values = list(values)
    suspects = _suspects([value for _, value in values])
    if not suspects:
        return  # the common case: no string that could hold a link
    matcher = _matcher(tuple(sorted(h.lower() for h in hosts)))
    bad = {text for text in suspects if _disguised(text, matcher)}  # each string once
    if not bad:
        return  # no field paths to build
    raise ValidationError(
        [
            FieldError(loc, "links to a platform host in a disguised form; send it plainly")
            for path, value in values
            for loc, text in _strings(path, value)
            if text in bad
        ]
    )


#: anything a link could start with (see :func:`_positions`): most data strings (names,
#: domains, dates) have none of these, and one C-level scan settles them
_MAYBE_LINK = re.compile(r"//|\\|[hH][tT][tT][pP][sS]?:|[wW][wW][wW]\.")


#: a link as producers send one: ``http(s)://`` and a host of letters, digits, hyphens
#: and dots, up to its path, query or fragment (or the end)
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?=[/?#]|\Z)")


def _disguised(text: str, matcher: HostMatcher) -> bool:
    """Does ``text`` hold a link that a browser opens on a platform host but that is not
    written plainly? A string that is one plain link (``https://name.tld/…``) with
    nothing after its host that could start another is decided without the scan: its
    host is its WHATWG host (:meth:`HostMatcher.plain`), platform or not, so nothing
    in it is disguised."""
    m = _PLAIN_URL.match(text)
    if m is not None and matcher.plain(m[1]) and _MAYBE_LINK.search(text, m.end()) is None:
        return False
    return _scan_disguised(text, matcher)


def _scan_disguised(text: str, matcher: HostMatcher) -> bool:
    if _MAYBE_LINK.search(text) is None:
        return False
    for f in find(text, matcher):
        scheme = text[f.start : f.host_start].lower()
        if scheme not in ("https://", "http://") or not matcher.canonical(
            text[f.host_start : f.end]
        ):
            return True
    return False


#: a model class's field names (``model_fields`` is a property that costs µs a read)
_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _suspects(values: list[Any]) -> set[str]:
    """Every distinct string in an event's data that anything a link could start with
    (the strings :func:`_strings` walks, without the paths)."""
    found: set[str] = set()
    stack = values[::-1]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _MAYBE_LINK.search(value):
                found.add(value)
        elif isinstance(value, BaseModel):
            cls = type(value)
            names = _FIELDS.get(cls)
            if names is None:
                names = _FIELDS[cls] = tuple(cls.model_fields)
            stack.extend(getattr(value, name) for name in names)
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return found


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
