"""Rendering: a validated event, a brand and a language → subject, text and HTML.

Templates live in ``templates/<lang>/<event>.jinja``: three blocks (``subject``,
optional ``preheader``, ``body``) over the language's ``layout.jinja``, which itself
extends a shared HTML or text skeleton. The body is written once, as paragraphs
separated by blank lines, with helpers (:mod:`.helpers`) that draw themselves as
mail-safe HTML or as plain text; so the HTML and text parts always say the same thing.

A message whose template chain includes a brand override (``brands/<id>/templates/
<lang>/<event>.jinja``, or the brand's layout) renders in the bounded sandbox
(:mod:`.sandbox`): in this process if its source proves the work small (:mod:`.static`),
else in a worker process (:mod:`.isolated`); the brand's other events use the stock
templates in the ordinary environment, so reseller code is always sandboxed and stock
code does not pay for the sandbox. Undefined variables are errors everywhere
(``StrictUndefined``). Templates are compiled once per environment and cached.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ... import events as catalog
from ...brands import Brand, BrandRegistry
from ...errors import NotifierError, RenderError, TemplateNotFound
from ...events import EventData, EventSpec
from ...i18n import formatter
from . import isolated
from .bounds import MAX_OUTPUT_CHARS, over
from .helpers import (
    FILTERS,
    MODE_HELPERS,
    SUBJECT_END,
    Memo,
    g_plural,
    html_paragraphs,
    text_paragraphs,
    tidy,
)
from .sandbox import BUDGET, BoundedSandbox, Budget, Environment, Handover, install_guards
from .static import INLINE_CPU_SECONDS, OVERRUNS, VettedSandbox

log = logging.getLogger("notifier.render")


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


def make_env(
    search_path: list[Path], mode: str, sandboxed: bool, *, trusted: Path | None = None
) -> jinja2.Environment:
    """``trusted``: a sandbox that compiles only the templates under ``trusted`` and
    those its source proves bounded (:class:`~.static.VettedSandbox`)."""
    cls: type[jinja2.Environment] = BoundedSandbox if sandboxed else Environment
    extra: dict[str, Any] = {}
    if sandboxed and trusted is not None:
        cls, extra = VettedSandbox, {"trusted": trusted}
    env = cls(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path], encoding="utf-8"),
        autoescape=(mode == "html"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=-1,
        **extra,
    )
    env.filters.update(FILTERS)
    env.filters["paragraphs"] = html_paragraphs if mode == "html" else text_paragraphs
    env.globals.update(MODE_HELPERS[mode])
    env.globals["plural"] = g_plural
    env.globals["mode"] = mode
    env.globals["subject_end"] = SUBJECT_END
    if sandboxed:
        install_guards(env)
    return env


@dataclass(frozen=True, slots=True)
class Job:
    """What a worker process needs to render a message whose template chain includes a
    brand override (:mod:`.isolated`): everything the parent decided, nothing it holds."""

    renderer: str  # the parent renderer's id: a worker keeps its environments apart
    search_path: tuple[Path, ...]  # the brand's templates, then the stock ones
    event: Event
    brand: Brand
    account: Brand
    lang: str
    unsubscribe_url: str | None


class Renderer:
    """Renders events in a brand and language; owns the compiled-template caches.

    Messages with a brand override render in a worker process (``isolate``, the
    default) through :func:`render_job`, unless their templates are provably bounded
    (:mod:`.static`); the rest in this process."""

    def __init__(
        self,
        templates_dir: Path,
        brands: BrandRegistry,
        *,
        isolate: bool = True,
        prove: bool = True,
    ) -> None:
        self.templates_dir = templates_dir
        self.brands = brands
        self.isolate = isolate
        self.prove = prove  # False: every override to a worker (bench/isolation.py)
        self.id = secrets.token_hex(8)
        self._envs: dict[tuple[str | None, str, bool], jinja2.Environment] = {}
        self._override_hits: dict[tuple[str, str, str], bool] = {}
        #: (brand, language, event) → why its renders go to a worker process
        self._handed_over: dict[tuple[str, str, str], str] = {}
        self._overruns: dict[tuple[str, str, str], int] = {}  # of the CPU allowance

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

    @staticmethod
    def _override_file(override: Path, lang: str, event: str) -> Path:
        """The brand's own file that a stopped render is blamed on (no line is known)."""
        for name in (f"{lang}/{event}.jinja", f"{lang}/layout.jinja", "_shared"):
            if (override / name).exists():
                return override / name
        return override

    def _search_path(self, brand: Brand, sandboxed: bool) -> tuple[Path, ...]:
        override = self.brands.override_dir(brand.id)
        if sandboxed and override:
            return (override, self.templates_dir)
        return (self.templates_dir,)

    def _env(
        self, brand: Brand, mode: str, sandboxed: bool, vetted: bool = False
    ) -> jinja2.Environment:
        key = (brand.id if sandboxed else None, mode, vetted)
        env = self._envs.get(key)
        if env is None:
            path = list(self._search_path(brand, sandboxed))
            trusted = self.templates_dir if vetted else None
            env = self._envs[key] = make_env(path, mode, sandboxed=sandboxed, trusted=trusted)
        return env

    def _inline(self, job: Job) -> tuple[str, str, str] | None:
        """``job`` rendered in this process if its templates are provably bounded and it
        keeps to its CPU allowance (:mod:`.static`); ``None`` if it must go to a worker
        (remembered: that template then always does; after a few overruns of the
        allowance, too). Errors read as a worker's would."""
        key = (job.brand.id, job.lang, job.event.name)
        if not self.prove or key in self._handed_over:
            return None
        try:
            return render_parts(
                job,
                lambda mode: self._env(job.brand, mode, True, vetted=True),
                True,
                cpu_seconds=INLINE_CPU_SECONDS,
            )
        except Handover as exc:
            overruns = self._overruns[key] = self._overruns.get(key, 0) + 1
            if exc.lasting or overruns >= OVERRUNS:
                self._handed_over[key] = str(exc)
                log.info("%s %s %s renders in a worker process: %s", *key, exc)
            return None
        except NotifierError:
            raise
        except Exception as exc:  # as a worker answers it (isolated._reply)
            raise RenderError(f"{type(exc).__name__}: {exc}") from exc

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
        sandboxed = self._overridden(brand, lang, event.name)
        path = self._search_path(brand, sandboxed)
        job = Job(self.id, path, event, brand, account, lang, unsubscribe_url)
        inline = self._inline(job) if sandboxed and self.isolate else None
        if inline is not None:
            subject, text, html = inline
        elif sandboxed and self.isolate:
            where = _display(path, self._override_file(path[0], lang, event.name))
            parts = isolated.pool().run(render_job, job, where=where)
            subject, text, html = parts["subject"], parts["text"], parts["html"]
        else:
            subject, text, html = render_parts(
                job, lambda mode: self._env(brand, mode, sandboxed), sandboxed
            )
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


def render_parts(
    job: Job,
    env_for: Callable[[str], jinja2.Environment],
    sandboxed: bool,
    *,
    cpu_seconds: float | None = None,
) -> tuple[str, str, str]:
    """Subject, text and HTML of one message; errors name the template file and line.
    ``cpu_seconds``: the sandbox's in-process allowance (:class:`~.sandbox.Budget`)."""
    event, brand, lang = job.event, job.brand, job.lang
    data = event.data
    ctx: dict[str, Any] = {name: getattr(data, name) for name in type(data).model_fields}
    ctx.update(
        data=data,
        event=event.name,
        brand=brand,
        account=job.account,
        recipient=event.recipient,
        lang=lang,
        mandatory=event.spec.mandatory,
        unsubscribe_url=job.unsubscribe_url,
        layout=f"{lang}/layout.jinja",
        _memo=Memo(formatter(lang, brand.timezone, brand.locale_for(lang))),
    )
    name = f"{lang}/{event.name}.jinja"
    token = BUDGET.set(Budget(cpu_seconds)) if sandboxed else None
    try:
        text_tmpl = env_for("text").get_template(name)
        out = _run(text_tmpl, {**ctx, "base": "_shared/layout.text.jinja"}, sandboxed)
        raw_subject, found, text = out.partition(SUBJECT_END)
        if not found:  # a brand's own text skeleton without the subject line
            text = raw_subject
            raw_subject = "".join(text_tmpl.blocks["subject"](text_tmpl.new_context(ctx)))
        subject = " ".join(raw_subject.split())
        text = tidy(text)
        html_tmpl = env_for("html").get_template(name)
        html_ctx = {**ctx, "base": "_shared/layout.html.jinja", "subject": subject}
        html = _run(html_tmpl, html_ctx, sandboxed)
    except jinja2.TemplateNotFound as exc:
        raise TemplateNotFound(f"{brand.id}: template {exc.name} not found") from exc
    except KeyError as exc:
        raise RenderError(f"{brand.id}: {name}: missing block {exc}") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = _display(job.search_path, Path(exc.filename)) if exc.filename else name
        raise RenderError(f"{brand.id}: {where}:{exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise _located(exc, job, name, exc.message or "undefined") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise _located(exc, job, name, f"not allowed in a template: {exc}") from exc
    except RenderError as exc:
        raise _located(exc, job, name, str(exc)) from exc
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise _located(exc, job, name, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if token is not None:
            BUDGET.reset(token)
    if not subject:
        raise RenderError(f"{brand.id}: {name}: empty subject")
    return subject, text, html


def _display(search_path: tuple[Path, ...], file: Path) -> str:
    """A template file as its author knows it: ``brands/acme/templates/fi/x.jinja``
    for a brand's, ``templates/fi/x.jinja`` for a stock one."""
    for root in search_path:
        try:
            rel = file.relative_to(root)
        except ValueError:
            continue
        keep = 3 if root != search_path[-1] else 1  # brands/<id>/templates | templates
        return "/".join((*root.parts[-keep:], *rel.parts))
    return str(file)


def _located(exc: BaseException, job: Job, name: str, message: str) -> RenderError:
    """``message`` prefixed with the template file and line the error came from
    (Jinja rewrites a render's traceback to point into the templates)."""
    found: tuple[str, int] | None = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".jinja"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return RenderError(f"{job.brand.id}: {name}: {message}")
    return RenderError(f"{_display(job.search_path, Path(found[0]))}:{found[1]}: {message}")


def _run(tmpl: jinja2.Template, ctx: Mapping[str, Any], bounded: bool) -> str:
    if not bounded:
        return tmpl.render(ctx)
    budget = BUDGET.get()
    parts: list[str] = []
    size = 0
    for i, piece in enumerate(tmpl.generate(ctx)):
        size += len(piece)
        if size > MAX_OUTPUT_CHARS:
            raise over("output", f"{MAX_OUTPUT_CHARS:,} characters")
        if i % 32 == 0:
            budget.check_time()
        parts.append(piece)
    return "".join(parts)


# --- in a worker process (:mod:`.isolated`) ---------------------------------------------

#: sandboxed environments by (parent renderer, search path, mode), most recent last
_JOB_ENVS: OrderedDict[tuple[str, tuple[Path, ...], str], jinja2.Environment] = OrderedDict()
_JOB_ENVS_MAX = 32


def render_job(job: Job) -> dict[str, str]:
    """Render ``job`` in the sandbox; runs in a worker process. Environments (and their
    compiled templates) are kept per parent renderer, as the parent would keep them."""

    def env_for(mode: str) -> jinja2.Environment:
        key = (job.renderer, job.search_path, mode)
        env = _JOB_ENVS.get(key)
        if env is None:
            env = _JOB_ENVS[key] = make_env(list(job.search_path), mode, sandboxed=True)
            while len(_JOB_ENVS) > _JOB_ENVS_MAX:
                _JOB_ENVS.popitem(last=False)
        _JOB_ENVS.move_to_end(key)
        return env

    subject, text, html = render_parts(job, env_for, sandboxed=True)
    return {"subject": subject, "text": text, "html": html}


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
