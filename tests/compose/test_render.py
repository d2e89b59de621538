from __future__ import annotations

import re
import shutil
import types
from collections.abc import Generator
from pathlib import Path

import pytest

from notifier import events
from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Renderer, sample_event
from notifier.compose.render.helpers import _collapse_spaces, html_paragraphs, text_paragraphs
from notifier.compose.render.sandbox import BoundedSandbox
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.errors import RenderError, TemplateNotFound

CASES = [
    (brand, lang, name)
    for brand in ("nordname", "acme", "kustwebb")
    for lang in ("fi", "sv", "en")
    for name in sorted(events.CATALOG)
]


@pytest.mark.parametrize(("brand", "lang", "name"), CASES)
def test_every_event_language_brand_renders(
    pipeline: Pipeline, brand: str, lang: str, name: str
) -> None:
    composed = pipeline.compose(pipeline.sample(name, brand, lang))
    r = composed.rendered
    assert r.language == lang
    assert r.subject and "\n" not in r.subject
    assert r.text.strip() and "<" not in r.text.replace("<http", "")
    assert r.html.startswith("<!DOCTYPE html>")
    if events.get(name).audience == "reseller":
        assert composed.brand.id == "nordname"
    else:
        assert composed.brand.id == brand
    # no platform name or host in anything the reseller's customer sees
    if not composed.brand.platform:
        blob = (r.subject + r.text + r.html).lower()
        assert "nordname" not in blob


def test_language_falls_back_to_brand_default(pipeline: Pipeline) -> None:
    r = pipeline.compose(pipeline.sample("domain.renewed", "kustwebb", "de")).rendered
    assert r.language == "sv"
    r = pipeline.compose(pipeline.sample("domain.renewed", "acme", None)).rendered
    assert r.language == "fi"


def test_finnish_copy_uses_babel_formats(pipeline: Pipeline) -> None:
    r = pipeline.compose(pipeline.sample("domain.renewal_reminder", "acme", "fi")).rendered
    # dates and "N days" hold together with no-break spaces (issue 12); the words are Babel's
    text = r.text.replace("\xa0", " ")
    assert "26.\xa0joulukuuta\xa02026" in r.text
    assert "26. joulukuuta 2026" in text
    assert "12,50\xa0€" in r.text
    assert "30 päivää" in text or "30 päivän" in text


def test_swedish_copy_uses_babel_formats(pipeline: Pipeline) -> None:
    r = pipeline.compose(pipeline.sample("domain.renewal_reminder", "acme", "sv")).rendered
    assert "26\xa0december\xa02026" in r.text
    assert "26 december 2026" in r.text.replace("\xa0", " ")
    assert "12,50\xa0€" in r.text


def test_html_and_text_say_the_same_facts(pipeline: Pipeline) -> None:
    r = pipeline.compose(pipeline.sample("transfer.auth_code", "acme", "en")).rendered
    code = events.get("transfer.auth_code").sample["auth_code"]
    assert code in r.text
    assert code.replace("#", "#") in r.html or "Xk7#pQ2v-Lm9" in r.html


def test_html_escapes_event_data(pipeline: Pipeline) -> None:
    spec = events.get("transfer.out_requested")
    data = events.validate_data(spec.name, {**spec.sample, "gaining_registrar": "<b>Evil</b> & Co"})
    ev = pipeline.sample(spec.name, "acme", "en")
    import dataclasses

    r = pipeline.compose(dataclasses.replace(ev, data=data)).rendered
    assert "<b>Evil</b>" not in r.html
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in r.html
    assert "<b>Evil</b> & Co" in r.text


def test_tld_changes_the_wording(pipeline: Pipeline) -> None:
    spec = events.get("transfer.auth_code")
    base = pipeline.sample(spec.name, "acme", "fi")
    import dataclasses

    fi = pipeline.compose(base).rendered.text
    com = pipeline.compose(
        dataclasses.replace(
            base, data=events.validate_data(spec.name, {**spec.sample, "domain": "esimerkki.com"})
        )
    ).rendered.text
    assert "vaihtoavain" in fi.lower()
    assert "vaihtoavain" not in com.lower()


def test_paragraph_helpers() -> None:
    assert text_paragraphs("one\ntwo\n\n\nthree") == "one two\n\nthree"
    assert str(html_paragraphs("a\nb\n\nc")) == (
        '<p style="margin:0 0 16px 0;">a b</p>\n<p style="margin:0 0 16px 0;">c</p>'
    )
    long = " ".join(["word"] * 40) + " https://example.com/" + "x" * 100
    wrapped = text_paragraphs(long)
    assert all(len(line) <= 76 for line in wrapped.splitlines()[:-1])
    assert "https://example.com/" + "x" * 100 in wrapped  # URLs are never broken


def test_collapse_spaces_matches_the_regex_it_replaces() -> None:
    slow = re.compile(r"[ \t\r\n]+")
    for text in ["", " ", "a", " a  b\t\tc\r\nd ", "x\u00a0€ \n y", "\n\n", "a \x0b b", " a b "]:
        assert _collapse_spaces(text) == slow.sub(" ", text).strip(" ")


# --- brand overrides run in the sandbox -------------------------------------------


def test_sandbox_attribute_verdicts_stay_the_same_when_remembered() -> None:
    env = BoundedSandbox()

    def gen() -> Generator[int, None, None]:
        yield 1

    g = gen()
    for _ in range(2):  # the second round comes from the memo
        assert env.is_safe_attribute(g, "gi_running", None)
        assert not env.is_safe_attribute(g, "gi_frame", None)
        assert not env.is_safe_attribute("s", "__class__", str)
        assert not env.is_safe_attribute("s", "_x", None)

    class Disguised:
        """Claims another class: ``isinstance`` believes it, so no per-type verdict."""

        def __init__(self, cls: type) -> None:
            self.cls = cls

        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return self.cls

    assert env.is_safe_attribute(Disguised(Disguised), "gi_frame", None)
    assert not env.is_safe_attribute(Disguised(types.GeneratorType), "gi_frame", None)


def _brand_with_override(tmp_path: Path, template: str, name: str = "domain.renewed") -> Pipeline:
    brands = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    override = brands / "acme" / "templates" / "en"
    override.mkdir(parents=True, exist_ok=True)
    (override / f"{name}.jinja").write_text(template)
    settings = Settings(var_dir=tmp_path / "var", brands_dir=brands, secret_key=Secret("s"))
    return Pipeline(settings)


def test_override_is_used(tmp_path: Path) -> None:
    p = _brand_with_override(
        tmp_path,
        "{% extends layout %}{% block subject %}Uusittu: {{ domain }}{% endblock %}"
        "{% block body %}Thanks from the override.{% endblock %}",
    )
    r = p.compose(p.sample("domain.renewed", "acme", "en")).rendered
    assert r.subject == "Uusittu: äänekoskenpuutarha.fi"
    assert "Thanks from the override." in r.text
    # other brands still get the stock template
    r2 = p.compose(p.sample("domain.renewed", "kustwebb", "en")).rendered
    assert "override" not in r2.text


def test_undefined_variable_is_an_error(tmp_path: Path) -> None:
    p = _brand_with_override(
        tmp_path, "{% extends layout %}{% block subject %}{{ no_such_field }}{% endblock %}"
    )
    with pytest.raises(RenderError, match="no_such_field"):
        p.compose(p.sample("domain.renewed", "acme", "en"))


@pytest.mark.parametrize(
    "evil",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ domain.__class__.__init__.__globals__ }}",
        "{{ 'A' * 50000000 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    ],
)
def test_sandbox_blocks_escapes_and_bombs(tmp_path: Path, evil: str) -> None:
    p = _brand_with_override(
        tmp_path,
        "{% extends layout %}{% block subject %}x{% endblock %}{% block body %}"
        + evil
        + "{% endblock %}",
    )
    with pytest.raises(RenderError):
        p.compose(p.sample("domain.renewed", "acme", "en"))


def test_missing_template_is_reported(tmp_path: Path) -> None:
    brands = BrandRegistry(PROJECT_ROOT / "brands", "nordname")
    empty = tmp_path / "templates"
    (empty / "en").mkdir(parents=True)
    renderer = Renderer(empty, brands)
    with pytest.raises(TemplateNotFound):
        renderer.render(sample_event("domain.renewed", "acme", "en"))


@pytest.mark.parametrize(
    "evil",
    [
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        "{% for a in 'x' * 16000 %}{% for b in 'y' * 16000 %}{{ a }}{% endfor %}{% endfor %}",
    ],
)
def test_sandbox_bounds_work_and_size(tmp_path: Path, evil: str) -> None:
    p = _brand_with_override(
        tmp_path,
        "{% extends layout %}{% block subject %}x{% endblock %}{% block body %}"
        + evil
        + "{% endblock %}",
    )
    with pytest.raises(RenderError):
        p.compose(p.sample("domain.renewed", "acme", "en"))


def test_sandboxed_override_still_renders_normal_loops(tmp_path: Path) -> None:
    p = _brand_with_override(
        tmp_path,
        "{% extends layout %}{% block subject %}{{ 'Renewed' ~ ': ' ~ domain }}{% endblock %}"
        "{% block body %}{% for i in range(3) %}{{ loop.index }}{% endfor %} "
        "{{ [1, 2]|join('+') }}{% endblock %}",
    )
    r = p.compose(p.sample("domain.renewed", "acme", "en")).rendered
    assert r.subject == "Renewed: äänekoskenpuutarha.fi"
    assert "123 1+2" in r.text
