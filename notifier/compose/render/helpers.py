"""The functions templates call: value formatting, buttons, facts, notices, and the
paragraph layout that turns one body into both the HTML and the plain-text part.

Each helper draws itself as mail-safe HTML (``h_*``) or as plain text (``t_*``); a
template calls ``button(...)`` and the environment of each mode binds the right one, so
the HTML and text parts always say the same thing. Block helpers mark their output with
:data:`BLOCK` so the paragraph layout leaves it unwrapped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ...errors import RenderError
from ...fields import Money
from ...i18n import NBSP, Formatter

#: marks a helper's output as a block (no paragraph wrapping); never in valid data
BLOCK = "\x02"
#: ends the subject at the top of the text render; never in valid data either
SUBJECT_END = "\x03"
TEXT_WIDTH = 76


class Memo:
    """Formats each value once per message, shared by the HTML and text renders."""

    __slots__ = ("cache", "fmt")

    def __init__(self, fmt: Formatter) -> None:
        self.fmt = fmt
        self.cache: dict[tuple[str, Any], str] = {}

    def __call__(self, kind: str, value: Any) -> str:
        key = (kind, value)
        try:
            return self.cache[key]
        except KeyError:
            pass
        except TypeError:  # unhashable
            return str(getattr(self.fmt, kind)(value))
        result = self.cache[key] = str(getattr(self.fmt, kind)(value))
        return result


def _memo(ctx: Any) -> Memo:
    memo: Memo = ctx["_memo"]
    return memo


@jinja2.pass_context
def f_date(ctx: Any, value: datetime | date | None) -> str:
    if value is None:
        raise RenderError("date filter got no value")
    return _memo(ctx)("day", value)


@jinja2.pass_context
def f_datetime(ctx: Any, value: datetime) -> str:
    """Date, time of day and its zone ("klo 9.30 Suomen aikaa")."""
    return _memo(ctx)("moment", value)


@jinja2.pass_context
def f_time(ctx: Any, value: datetime) -> str:
    return _memo(ctx)("clock", value)


@jinja2.pass_context
def f_money(ctx: Any, value: Money | Decimal | int) -> str:
    return _memo(ctx)("money", value)


@jinja2.pass_context
def f_number(ctx: Any, value: Decimal | int | float) -> str:
    return _memo(ctx)("number", value)


@jinja2.pass_context
def f_percent(ctx: Any, value: Decimal | int | float) -> str:
    return _memo(ctx)("percent", value)


@jinja2.pass_context
def f_month(ctx: Any, value: str) -> str:
    return _memo(ctx)("month", value)


@jinja2.pass_context
def f_list(ctx: Any, value: Iterable[Any]) -> str:
    return _memo(ctx).fmt.join(list(value))


@jinja2.pass_context
def g_plural(ctx: Any, count: int, one: str, other: str) -> str:
    # "30 päivää" never breaks across lines: a no-break space after the number
    return _memo(ctx).fmt.plural(count, one, other).replace(" ", NBSP, 1)


@functools.lru_cache(maxsize=8)
def _wrap_pattern(width: int) -> re.Pattern[str]:
    # a line: up to ``width`` characters ending before a space; or one longer word
    return re.compile(r"[^ ].{0," + str(width - 1) + r"}(?= |$)|[^ ]+")


def _collapse_spaces(text: str) -> str:
    r"""Each run of ASCII spaces, tabs and line breaks → one space, none at the ends.

    The same as ``re.sub(r"[ \t\r\n]+", " ", text).strip(" ")``, but with str methods:
    the regex replaced every single space of a paragraph, ~5 µs a paragraph."""
    for char in "\n\r\t":
        if char in text:
            text = text.replace(char, " ")
    if "  " in text:
        return " ".join([word for word in text.split(" ") if word])
    return text.strip(" ")


#: an international phone number, "+358 3 555 0123": never broken across lines
_PHONE = re.compile(r"\+\d{1,3}(?: \d{1,5}){1,5}\b")


def _nbsp(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", "\u00a0")


def _wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Greedy word wrap on ASCII spaces only: never breaks a word (URLs stay whole)
    nor at a no-break space (``12,50\u00a0€`` stays together), nor inside a phone
    number."""
    text = _collapse_spaces(text)
    if len(text) <= width:
        return text
    if "+" in text:  # a one-character test keeps the regex off most paragraphs
        text = _PHONE.sub(_nbsp, text)
    return "\n".join(_wrap_pattern(width).findall(text))


# not ``\n{3,}``: a literal prefix lets the regex engine skip ahead (~8x faster)
_BLANKS = re.compile(r"\n\n\n+")


def tidy(text: str) -> str:
    """At most one blank line in a row; no blank lines at the ends."""
    return _BLANKS.sub("\n\n", text).strip("\n") + "\n"


def _chunks(body: str) -> Iterator[tuple[bool, str]]:
    if "\r" in body:  # a one-character test is ~40x cheaper than the two-character replace
        body = body.replace("\r\n", "\n")
    for chunk in body.split("\n\n"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if chunk.startswith(BLOCK):
            yield True, chunk
        elif BLOCK in chunk:  # a block written right after a paragraph line
            head, _, tail = chunk.partition(BLOCK)
            if head.strip():
                yield False, head.strip()
            yield True, BLOCK + tail
        else:
            yield False, chunk


def text_paragraphs(body: str) -> str:
    out = []
    for is_block, chunk in _chunks(body):
        out.append(chunk.replace(BLOCK, "").strip("\n") if is_block else _wrap(chunk))
    return "\n\n".join(out)


def _nowrap_phones(html: str) -> str:
    """Phone numbers in one piece on a narrow (375 px) screen."""
    if "+" not in html:
        return html
    return _PHONE.sub(lambda m: f'<span style="white-space:nowrap;">{m.group(0)}</span>', html)


def html_paragraphs(body: str) -> Markup:
    out = []
    for is_block, chunk in _chunks(str(body)):
        if is_block:
            out.append(chunk.replace(BLOCK, ""))
        else:
            chunk = _nowrap_phones(chunk)
            out.append('<p style="margin:0 0 16px 0;">' + chunk.replace("\n", " ") + "</p>")
    return Markup("\n".join(out))


def _colors(ctx: Any) -> Any:
    return ctx["brand"].colors


def _e(value: Any) -> str:
    return str(escape(value))


@jinja2.pass_context
def h_button(ctx: Any, url: str, label: str) -> Markup:
    c = _colors(ctx)
    return Markup(
        f'{BLOCK}<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
        f'style="margin:8px 0 24px 0;"><tr><td class="btn" bgcolor="{c.primary}" '
        f'style="border-radius:6px;background-color:{c.primary};">'
        f'<a href="{_e(url)}" target="_blank" style="display:inline-block;padding:12px 24px;'
        "font-family:Arial,Helvetica,sans-serif;font-size:16px;font-weight:bold;"
        f'color:{c.button_text};text-decoration:none;border-radius:6px;">{_e(label)}</a>'
        "</td></tr></table>"
    )


def t_button(url: str, label: str) -> str:
    return f"{BLOCK}{label}:\n{url}"


_FACT_ROW = (
    '<tr><td width="40%" style="padding:6px 12px 6px 0;color:#5f6368;vertical-align:top;">{}</td>'
    '<td style="padding:6px 0;font-weight:bold;">{}</td></tr>'
)


@jinja2.pass_context
def h_facts(ctx: Any, rows: Iterable[Any]) -> Markup:
    c = _colors(ctx)
    cells = "".join(_FACT_ROW.format(_e(r[0]), _e(r[1])) for r in rows if r is not None)
    return Markup(
        f'{BLOCK}<table role="presentation" class="facts" cellpadding="0" cellspacing="0" '
        f'border="0" width="100%" style="margin:0 0 20px 0;border-top:1px solid {c.accent};'
        f'border-bottom:1px solid {c.accent};font-size:15px;">{cells}</table>'
    )


def t_facts(rows: Iterable[Any]) -> str:
    pairs = [(str(r[0]), str(r[1])) for r in rows if r is not None]
    width = max((len(label) for label, _ in pairs), default=0) + 1
    return BLOCK + "\n".join(f"{(label + ':').ljust(width)} {value}" for label, value in pairs)


@jinja2.pass_context
def h_notice(ctx: Any, text: str) -> Markup:
    c = _colors(ctx)
    return Markup(
        f'{BLOCK}<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
        f'width="100%" style="margin:0 0 20px 0;"><tr><td class="notice" bgcolor="{c.accent}" '
        f'style="padding:14px 16px;background-color:{c.accent};border-left:4px solid {c.primary};'
        f'border-radius:4px;">{_nowrap_phones(_e(text))}</td></tr></table>'
    )


def t_notice(text: str) -> str:
    return BLOCK + "\n".join("| " + line for line in _wrap(str(text), TEXT_WIDTH - 2).split("\n"))


@jinja2.pass_context
def h_code(ctx: Any, text: str) -> Markup:
    c = _colors(ctx)
    return Markup(
        f'{BLOCK}<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
        f'style="margin:0 0 20px 0;"><tr><td class="code" bgcolor="{c.accent}" '
        f'style="padding:12px 18px;background-color:{c.accent};'
        "font-family:'Courier New',Courier,monospace;font-size:20px;"
        f'letter-spacing:1px;border:1px dashed {c.primary};">{_e(text)}</td></tr></table>'
    )


def t_code(text: str) -> str:
    return f"{BLOCK}    {text}"


def h_items(items: Iterable[Any]) -> Markup:
    lis = "".join(f'<li style="margin:0 0 6px 0;">{_e(i)}</li>' for i in items)
    return Markup(f'{BLOCK}<ul style="margin:0 0 20px 0;padding:0 0 0 22px;">{lis}</ul>')


def t_items(items: Iterable[Any]) -> str:
    return BLOCK + "\n".join(f"  - {i}" for i in items)


def h_strong(value: Any) -> Markup:
    return Markup(f"<strong>{_e(value)}</strong>")


def t_strong(value: Any) -> str:
    return str(value)


def h_link(url: str, label: str | None = None) -> Markup:
    return Markup(f'<a href="{_e(url)}" style="color:inherit;">{_e(label or url)}</a>')


def t_link(url: str, label: str | None = None) -> str:
    return url if not label or label == url else f"{label} ({url})"


FILTERS: dict[str, Callable[..., Any]] = {
    "date": f_date,
    "datetime": f_datetime,
    "time": f_time,
    "money": f_money,
    "number": f_number,
    "percent": f_percent,
    "month": f_month,
    "listing": f_list,
}
MODE_HELPERS: dict[str, dict[str, Callable[..., Any]]] = {
    "html": {
        "button": h_button,
        "facts": h_facts,
        "notice": h_notice,
        "code": h_code,
        "items": h_items,
        "bullets": h_items,
        "strong": h_strong,
        "link": h_link,
    },
    "text": {
        "button": t_button,
        "facts": t_facts,
        "notice": t_notice,
        "code": t_code,
        "items": t_items,
        "bullets": t_items,
        "strong": t_strong,
        "link": t_link,
    },
}
