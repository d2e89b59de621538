"""Rendering: a validated event, a brand and a language → subject, text and HTML.

Templates live in ``templates/<lang>/<event>.jinja``: three blocks (``subject``,
optional ``preheader``, ``body``) over the language's ``layout.jinja``, which itself
extends a shared HTML or text skeleton. The body is written once, as paragraphs
separated by blank lines, with helpers (``button``, ``facts``, ``notice``, ``code``,
``items``) that draw themselves as mail-safe HTML or as plain text; so the HTML and
text parts always say the same thing.

A message whose template chain includes a brand override (``brands/<id>/templates/
<lang>/<event>.jinja``, or the brand's layout) renders in Jinja's
``SandboxedEnvironment`` with bounded output size and time; the brand's other events
use the stock templates in the ordinary environment, so reseller code is always
sandboxed and stock code does not pay for the sandbox. Undefined
variables are errors everywhere (``StrictUndefined``). Templates are compiled once
per environment and cached.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes as jinja_nodes
from jinja2.runtime import markup_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from .. import events as catalog
from ..brands import Brand, BrandRegistry
from ..errors import RenderError, TemplateNotFound
from ..events import EventData, EventSpec
from ..fields import Money
from ..i18n import Formatter, formatter

#: marks a helper's output as a block (no paragraph wrapping); never in valid data
BLOCK = "\x02"
#: ends the subject at the top of the text render; never in valid data either
SUBJECT_END = "\x03"
TEXT_WIDTH = 76
MAX_OUTPUT_CHARS = 512 * 1024  # one rendered part of a reseller template
MAX_VALUE_CHARS = 16 * 1024  # one value a reseller template computes
MAX_STEPS = 10_000  # loop iterations + calls in one render of a reseller template
MAX_RENDER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event: what the intake accepted."""

    name: str
    spec: EventSpec
    brand_id: str
    recipient: Recipient
    data: EventData
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a template produced for one event, brand and language."""

    event: str
    brand_id: str  # the brand the mail is sent in
    account_id: str  # the brand (reseller) the event belongs to
    language: str
    mandatory: bool
    recipient: Recipient
    subject: str
    text: str
    html: str
    unsubscribe_url: str | None = None


# --- helpers the templates call ----------------------------------------------------


class _Memo:
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


def _memo(ctx: Any) -> _Memo:
    memo: _Memo = ctx["_memo"]
    return memo


@jinja2.pass_context
def f_date(ctx: Any, value: datetime | date | None) -> str:
    if value is None:
        raise RenderError("date filter got no value")
    return _memo(ctx)("date", value)


@jinja2.pass_context
def f_datetime(ctx: Any, value: datetime) -> str:
    return _memo(ctx)("datetime", value)


@jinja2.pass_context
def f_time(ctx: Any, value: datetime) -> str:
    return _memo(ctx)("time", value)


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
    return _memo(ctx).fmt.plural(count, one, other)


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


def _wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Greedy word wrap on ASCII spaces only: never breaks a word (URLs stay whole)
    nor at a no-break space (``12,50\u00a0€`` stays together)."""
    text = _collapse_spaces(text)
    if len(text) <= width:
        return text
    return "\n".join(_wrap_pattern(width).findall(text))


# not ``\n{3,}``: a literal prefix lets the regex engine skip ahead (~8x faster)
_BLANKS = re.compile(r"\n\n\n+")


def _tidy(text: str) -> str:
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


def html_paragraphs(body: str) -> Markup:
    out = []
    for is_block, chunk in _chunks(str(body)):
        if is_block:
            out.append(chunk.replace(BLOCK, ""))
        else:
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
        f'border-radius:4px;">{_e(text)}</td></tr></table>'
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


_FILTERS: dict[str, Callable[..., Any]] = {
    "date": f_date,
    "datetime": f_datetime,
    "time": f_time,
    "money": f_money,
    "number": f_number,
    "percent": f_percent,
    "month": f_month,
    "listing": f_list,
}
_MODE_HELPERS: dict[str, dict[str, Callable[..., Any]]] = {
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


class _Budget:
    """Work a reseller template may do in one render: loop iterations and calls
    (``steps``), and wall time. Shared through a context variable by the guards."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderError(f"template does too much work (over {MAX_STEPS} loop steps or calls)")
        if time.monotonic() > self.deadline:
            raise RenderError(f"rendering took over {MAX_RENDER_SECONDS} s")


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("render_budget")


def _check_value(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > limit:
        raise RenderError(f"template value too large ({len(value)} > {limit})")
    return value


def _check_args(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE_CHARS:
            raise RenderError(f"number too large for a template argument: {arg}")


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        budget.tick()
        yield item


def _guard_concat(*parts: Any) -> Any:
    return _check_value(markup_join(parts))


class _Guard(NodeTransformer):
    """Routes every ``for`` loop and ``~`` concatenation of a reseller template through
    the budget guards above (the sandbox itself intercepts neither)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env

    def _call(self, name: str, args: list[Any], lineno: int) -> jinja_nodes.Call:
        node = jinja_nodes.Call(jinja_nodes.Name(name, "load"), args, [], None, None)
        node.set_lineno(lineno)
        node.set_environment(self.env)
        return node

    def visit_For(self, node: jinja_nodes.For) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.For)
        visited.iter = self._call("_guard_iter", [visited.iter], visited.lineno)
        return visited

    def visit_Concat(self, node: jinja_nodes.Concat) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.Concat)
        return self._call("_guard_concat", list(visited.nodes), visited.lineno)


def _sized_filter(func: Callable[..., Any], limit: int) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_args(args[1:])
        _check_args(kwargs.values())
        return _check_value(func(*args, **kwargs), limit)

    return wrapper


class _Environment(jinja2.Environment):
    """Templates get their globals as a plain dict rather than Jinja's ``ChainMap``:
    each render copies them into its context, and copying a ``ChainMap`` goes key by
    key in Python (~7 µs a template render, two renders a message). The price, that
    globals changed after a template is loaded do not reach it, is one Jinja asks to
    avoid anyway; :func:`_make_env` sets them all before any template loads."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class _BoundedSandbox(_Environment, SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes), plus bounds on work and size: loop
    iterations and calls count against a per-render budget with a deadline; ``*``,
    ``**``, ``+``, ``~``, filters and calls refuse huge arguments and results."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._safe_attributes: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Jinja's verdict, remembered per (type, attribute name): it depends on nothing
        else (the name, and ``isinstance`` against Python's internal types), yet costs
        ~0.5 µs, and the stock layout reads some 70 brand attributes a message. An
        object whose ``__class__`` is not its type (a proxy) is judged every time, as
        ``isinstance`` looks at ``__class__``; the memo is cleared if names pile up."""
        cls = type(obj)
        if obj.__class__ is not cls:
            return super().is_safe_attribute(obj, attr, value)
        key = (cls, attr)
        safe = self._safe_attributes.get(key)
        if safe is None:
            if len(self._safe_attributes) >= 4096:
                self._safe_attributes.clear()
            safe = self._safe_attributes[key] = super().is_safe_attribute(obj, attr, value)
        return safe

    def _parse(self, source: str, name: str | None, filename: str | None) -> jinja_nodes.Template:
        tree = super()._parse(source, name, filename)
        result = _Guard(self).visit(tree)
        assert isinstance(result, jinja_nodes.Template)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > 64:
            raise RenderError("exponent too large in template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * n > MAX_VALUE_CHARS:
                        raise RenderError("template value too large")
        return _check_value(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _BUDGET.get().tick()
        _check_args(args)
        _check_args(kwargs.values())
        return _check_value(super().call(__context, __obj, *args, **kwargs))


def _make_env(search_path: list[Path], mode: str, sandboxed: bool) -> jinja2.Environment:
    cls: type[jinja2.Environment] = _BoundedSandbox if sandboxed else _Environment
    env = cls(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path], encoding="utf-8"),
        autoescape=(mode == "html"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters.update(_FILTERS)
    env.filters["paragraphs"] = html_paragraphs if mode == "html" else text_paragraphs
    env.globals.update(_MODE_HELPERS[mode])
    env.globals["plural"] = g_plural
    env.globals["mode"] = mode
    env.globals["subject_end"] = SUBJECT_END
    if sandboxed:
        env.filters = {
            name: _sized_filter(f, MAX_OUTPUT_CHARS if name == "paragraphs" else MAX_VALUE_CHARS)
            for name, f in env.filters.items()
        }
        env.globals["_guard_iter"] = _guard_iter
        env.globals["_guard_concat"] = _guard_concat
    return env


class Renderer:
    """Renders events in a brand and language; owns the compiled-template caches."""

    def __init__(self, templates_dir: Path, brands: BrandRegistry) -> None:
        self.templates_dir = templates_dir
        self.brands = brands
        self._envs: dict[tuple[str | None, str], jinja2.Environment] = {}
        self._override_hits: dict[tuple[str, str, str], bool] = {}

    def _overridden(self, brand: Brand, lang: str, event: str) -> bool:
        """Does any template in this message's chain come from the brand?"""
        key = (brand.id, lang, event)
        hit = self._override_hits.get(key)
        if hit is None:
            override = self.brands.override_dir(brand.id)
            names = (
                f"{lang}/{event}.jinja",
                f"{lang}/layout.jinja",
                "_shared/layout.html.jinja",
                "_shared/layout.text.jinja",
            )
            hit = override is not None and any((override / n).is_file() for n in names)
            self._override_hits[key] = hit
        return hit

    def _env(self, brand: Brand, mode: str, sandboxed: bool) -> jinja2.Environment:
        key = (brand.id if sandboxed else None, mode)
        env = self._envs.get(key)
        if env is None:
            override = self.brands.override_dir(brand.id)
            path = (
                [override, self.templates_dir] if sandboxed and override else [self.templates_dir]
            )
            env = self._envs[key] = _make_env(path, mode, sandboxed=sandboxed)
        return env

    def sending_brand(self, spec: EventSpec, data: EventData, account: Brand) -> Brand:
        if spec.audience_of(data) == "reseller":
            return self.brands.platform
        return account

    def template_name(self, lang: str, event: str) -> str:
        return f"{lang}/{event}.jinja"

    def render(self, event: Event, unsubscribe_url: str | None = None) -> Rendered:
        account = self.brands.get(event.brand_id)
        brand = self.sending_brand(event.spec, event.data, account)
        lang = brand.choose_language(event.recipient.language)
        data = event.data
        ctx: dict[str, Any] = {name: getattr(data, name) for name in type(data).model_fields}
        ctx.update(
            data=data,
            event=event.name,
            brand=brand,
            account=account,
            recipient=event.recipient,
            lang=lang,
            mandatory=event.spec.mandatory,
            unsubscribe_url=unsubscribe_url,
            layout=f"{lang}/layout.jinja",
            _memo=_Memo(formatter(lang, brand.timezone)),
        )
        sandboxed = self._overridden(brand, lang, event.name)
        name = self.template_name(lang, event.name)
        token = _BUDGET.set(_Budget()) if sandboxed else None
        try:
            text_env = self._env(brand, "text", sandboxed)
            text_tmpl = text_env.get_template(name)
            out = self._run(text_tmpl, {**ctx, "base": "_shared/layout.text.jinja"}, sandboxed)
            raw_subject, found, text = out.partition(SUBJECT_END)
            if not found:  # a brand's own text skeleton without the subject line
                text = raw_subject
                raw_subject = "".join(text_tmpl.blocks["subject"](text_tmpl.new_context(ctx)))
            subject = " ".join(raw_subject.split())
            text = _tidy(text)
            html_tmpl = self._env(brand, "html", sandboxed).get_template(name)
            html_ctx = {**ctx, "base": "_shared/layout.html.jinja", "subject": subject}
            html = self._run(html_tmpl, html_ctx, sandboxed)
        except jinja2.TemplateNotFound as exc:
            raise TemplateNotFound(f"{brand.id}: template {exc.name} not found") from exc
        except KeyError as exc:
            raise RenderError(f"{brand.id}: {name}: missing block {exc}") from exc
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{brand.id}: {name}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{brand.id}: {exc.filename}:{exc.lineno}: {exc.message}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"{brand.id}: {name}: not allowed in a template: {exc}") from exc
        except RenderError:
            raise
        except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as exc:
            raise RenderError(f"{brand.id}: {name}: {type(exc).__name__}: {exc}") from exc
        finally:
            if token is not None:
                _BUDGET.reset(token)
        if not subject:
            raise RenderError(f"{brand.id}: {name}: empty subject")
        return Rendered(
            event=event.name,
            brand_id=brand.id,
            account_id=account.id,
            language=lang,
            mandatory=event.spec.mandatory,
            recipient=event.recipient,
            subject=subject,
            text=text,
            html=html,
            unsubscribe_url=unsubscribe_url,
        )

    @staticmethod
    def _run(tmpl: jinja2.Template, ctx: Mapping[str, Any], bounded: bool) -> str:
        if not bounded:
            return tmpl.render(ctx)
        budget = _BUDGET.get()
        parts: list[str] = []
        size = 0
        for i, piece in enumerate(tmpl.generate(ctx)):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(f"{tmpl.name}: output over {MAX_OUTPUT_CHARS} characters")
            if i % 32 == 0 and time.monotonic() > budget.deadline:
                raise RenderError(f"{tmpl.name}: rendering took over {MAX_RENDER_SECONDS} s")
            parts.append(piece)
        return "".join(parts)


def sample_event(name: str, brand_id: str, language: str | None = None) -> Event:
    """An event with the catalog's sample data, for previews, checks and benches."""
    spec = catalog.get(name)
    return Event(
        name=name,
        spec=spec,
        brand_id=brand_id,
        recipient=Recipient(
            email="aino.virtanen@example.fi", name="Aino Virtanen", language=language
        ),
        data=catalog.sample(name),
    )


__all__ = ["Event", "Recipient", "Rendered", "Renderer", "escape", "sample_event"]
