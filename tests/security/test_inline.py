"""Issue 10 §3, and its cost: a brand override whose source proves it bounded renders
in-process (a worker round trip costs more than the render); anything else, and any
in-process render over its CPU allowance, renders in a worker process as before."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Renderer, engine, isolated, sample_event, static
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.errors import RenderError
from tests.security.test_sandbox import BOMBS

KUSTWEBB = (
    PROJECT_ROOT / "brands" / "kustwebb" / "templates" / "sv" / "domain.renewal_reminder.jinja"
)

#: name → a template body its source does not prove bounded
UNBOUNDED: dict[str, str] = {
    "for loop": "{% for i in [1, 2] %}{{ i }}{% endfor %}",
    "macro": "{% macro m() %}x{% endmacro %}{{ m() }}",
    "call block": "{% call strong() %}x{% endcall %}",
    "include": "{% include 'en/domain.expired.jinja' %}",
    "import": "{% import 'en/layout.jinja' as l %}",
    "from import": "{% from 'en/layout.jinja' import x %}",
    "set block": "{% set x %}y{% endset %}{{ x }}",
    "block recursion": "{{ self.body() }}{{ self.body() }}",
    "multiply": "{{ 'x' * 3 }}",
    "power": "{{ 2 ** 8 }}",
    "printf": "{{ '%s' % 1 }}",
    "range": "{{ range(3)|length }}",
    "namespace": "{% set ns = namespace(x=1) %}{{ ns.x }}",
    "namespace assignment": "{% set ns.x = 2 %}",
    "str.format": "{{ '{}'.format(1) }}",
    "str.replace method": "{{ 'ab'.replace('a', 'b') }}",
    "str.join method": "{{ ','.join(['a']) }}",
    "format filter": "{{ '%s'|format(1) }}",
    "center filter": "{{ 'x'|center(9) }}",
    "list filter": "{{ 'abc'|list|length }}",
    "map filter": "{{ ['a']|map('upper')|join }}",
    "unknown test": "{{ 1 is callable }}",
    "shadowed helper": "{% set strong = brand.name.upper %}{{ strong() }}",
    "helper shadowed by with": "{% with strong = brand.name.upper %}{{ strong() }}{% endwith %}",
    "*args": "{{ plural(*[1, 'a', 'b']) }}",
    "**kwargs in a filter": "{{ 'x'|default(**{'boolean': true}) }}",
    "caller": "{{ caller }}",
    "too many nodes": "{{ domain }}" * (static.MAX_NODES + 1),
}

#: name → a body made only of what renders in-process
BOUNDED: dict[str, str] = {
    "text": "Renewed.",
    "helpers": "{{ strong(domain) }} {{ plural(2, 'day', 'days') }} {{ button('https://x', 'G') }}",
    "filters": "{{ expires_at|date }} {{ domain|upper|replace('.', '-') }} {{ [1, 2]|join(', ') }}",
    "conditions": "{% if domain is string and domain|length > 3 %}long{% else %}short{% endif %}",
    "assignments": "{% set x = domain ~ '!' %}{% set y = x + '?' %}{{ y[1:4] }} {{ 7 // 2 }}",
    "methods": "{{ brand.support.hours.get(lang, '') }}{{ domain.startswith('a') }}",
    "blocks and super": "{% block extra %}{{ super() }}{% endblock %}",
    "filter block": "{% filter upper %}{{ domain }}{% endfilter %}",
    "with": "{% with n = domain %}{{ n }}{% endwith %}",
}

_ENV = jinja2.Environment()


def _body(body: str) -> str:
    return (
        "{% extends layout %}{% block subject %}x{% endblock %}{% block body %}\n"
        + body
        + "\n{% endblock %}"
    )


@pytest.mark.parametrize("name", sorted(UNBOUNDED))
def test_what_can_run_away_is_not_proved_bounded(name: str) -> None:
    why = static.unbounded(_ENV.parse(_body(UNBOUNDED[name])))
    assert why is not None, name


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_what_cannot_run_away_is_proved_bounded(name: str) -> None:
    assert static.unbounded(_ENV.parse(_body(BOUNDED[name]))) is None


def test_every_bomb_renders_in_a_worker() -> None:
    """Each bomb of test_sandbox.py is refused by the sandbox's bounds; none of them
    would render in-process in the first place."""
    for name, (body, _) in BOMBS.items():
        assert static.unbounded(_ENV.parse(_body(body))) is not None, name


def test_the_reason_names_the_line() -> None:
    why = static.unbounded(_ENV.parse("a\nb\n{% for i in x %}{% endfor %}"))
    assert why == "line 3: a {% for %} statement"


def test_a_shipped_override_is_proved_bounded() -> None:
    assert static.unbounded(_ENV.parse(KUSTWEBB.read_text())) is None


# --- which process renders --------------------------------------------------------------


@pytest.fixture
def pool_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The real worker pool, with each render it runs recorded (by template owner)."""
    runs: list[str] = []
    real = isolated.Pool.run

    def run(self: isolated.Pool, fn: Any, *args: Any, where: str = "template") -> Any:
        runs.append(where)
        return real(self, fn, *args, where=where)

    monkeypatch.setattr(isolated.Pool, "run", run)
    yield runs


def _settings(tmp_path: Path, body: str) -> Settings:
    brands = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    override = brands / "acme" / "templates" / "en"
    override.mkdir(parents=True, exist_ok=True)
    (override / "domain.renewed.jinja").write_text(_body(body))
    return Settings(var_dir=tmp_path / "var", brands_dir=brands, secret_key=Secret("s"))


def test_a_bounded_override_renders_in_process_as_a_worker_would(
    tmp_path: Path, pool_runs: list[str]
) -> None:
    """The shipped override: no worker is asked, and a worker renders it identically."""
    settings = Settings(var_dir=tmp_path / "var", secret_key=Secret("s"))
    p = Pipeline(settings)
    event = p.sample("domain.renewal_reminder", "kustwebb", "sv")
    here = p.renderer.render(event)
    assert pool_runs == []
    renderer, brand = p.renderer, p.brands.get("kustwebb")
    job = engine.Job(
        renderer.id, renderer._search_path(brand, True), event, brand, brand, "sv", None
    )
    there = isolated.pool().run(engine.render_job, job)
    assert (here.subject, here.text, here.html) == (there["subject"], there["text"], there["html"])


@pytest.mark.parametrize("name", ["for loop", "set block", "multiply"])
def test_an_unbounded_override_renders_in_a_worker(
    tmp_path: Path, pool_runs: list[str], name: str
) -> None:
    p = Pipeline(_settings(tmp_path, UNBOUNDED[name]))
    for _ in range(2):
        p.compose(p.sample("domain.renewed", "acme", "en"))
    assert pool_runs == ["brands/acme/templates/en/domain.renewed.jinja"] * 2
    # the stock templates of the same brand still render in-process
    p.compose(p.sample("domain.expired", "acme", "en"))
    assert len(pool_runs) == 2


def test_an_unbounded_layout_override_sends_its_events_to_a_worker(
    tmp_path: Path, pool_runs: list[str]
) -> None:
    """The event's own template is bounded; the brand's layout, loaded while rendering
    it, is not: the render is handed over midway and finished by a worker."""
    settings = _settings(tmp_path, "Renewed.")
    layout = settings.brands_dir / "acme" / "templates" / "en" / "layout.jinja"
    stock = (PROJECT_ROOT / "templates" / "en" / "layout.jinja").read_text()
    layout.write_text(
        stock.replace("{% extends base %}", "{% extends base %}{% for _ in [1] %}{% endfor %}")
    )
    p = Pipeline(settings)
    text = p.compose(p.sample("domain.renewed", "acme", "en")).rendered.text
    assert "Renewed." in text
    assert len(pool_runs) == 1


def test_a_render_over_its_cpu_allowance_is_finished_by_a_worker(
    tmp_path: Path, pool_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """However its source reads, an in-process render that uses up its CPU allowance
    stops and goes to a worker (its compilation is not counted). One overrun (a cold
    start, a busy machine) does not settle it; after a few, that template always
    renders in a worker."""
    p = Pipeline(_settings(tmp_path, "{{ strong('Renewed.') }}"))
    key = ("acme", "en", "domain.renewed")

    def render() -> None:
        assert "Renewed." in p.compose(p.sample("domain.renewed", "acme", "en")).rendered.text

    render()  # compiled; in-process
    assert pool_runs == []
    monkeypatch.setattr(engine, "INLINE_CPU_SECONDS", 0.0)
    render()
    assert len(pool_runs) == 1 and key not in p.renderer._handed_over
    monkeypatch.setattr(engine, "INLINE_CPU_SECONDS", static.INLINE_CPU_SECONDS)
    render()
    assert len(pool_runs) == 1  # in-process again
    monkeypatch.setattr(engine, "INLINE_CPU_SECONDS", 0.0)
    for _ in range(static.OVERRUNS):
        render()
    assert len(pool_runs) == 1 + static.OVERRUNS
    assert "CPU allowance" in p.renderer._handed_over[key]
    monkeypatch.setattr(engine, "INLINE_CPU_SECONDS", static.INLINE_CPU_SECONDS)
    render()
    assert len(pool_runs) == 2 + static.OVERRUNS  # settled: a worker from now on


def test_an_in_process_error_reads_as_a_workers(tmp_path: Path) -> None:
    """A bounded override that fails (a helper given the wrong shape of value) fails with
    the message a worker gives, in-process and in a worker alike."""
    body = "\n{{ facts([(1,)]) }}"
    brands = BrandRegistry(_settings(tmp_path, body).brands_dir, "nordname")
    event = sample_event("domain.renewed", "acme", "en")
    messages = []
    for inline in (True, False):
        renderer = Renderer(PROJECT_ROOT / "templates", brands, prove=inline)
        with pytest.raises(RenderError) as err:
            renderer.render(event)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "IndexError" in messages[0]
