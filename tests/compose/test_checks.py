"""`notifier templates check` in CI: every event × language × brand, with sample and
edge data (0, 1, many; long and IDN domains; .fi, .se, gTLD), passes the render checks
and the language lints; and each lint fails on the text it is there to catch."""

from __future__ import annotations

import dataclasses

from notifier import events
from notifier.compose import lints
from notifier.compose.checks import check_all, language_problems, variants
from notifier.compose.pipeline import Composed, Pipeline
from notifier.i18n import formatter


def test_every_event_language_brand_and_variant_passes(pipeline: Pipeline) -> None:
    results = check_all(pipeline)
    failed = [f"{r.brand} {r.language} {r.event} [{r.variant}]: {r.problem}" for r in results]
    failed = [line for line, r in zip(failed, results, strict=True) if not r.ok]
    assert not failed, "\n".join(failed)
    labels = {r.variant for r in results}
    assert {"days_left=0", "days_left=1", ".com", ".se", "long domain"} <= labels
    assert len(results) > 1000


def _composed(
    pipeline: Pipeline, name: str = "domain.renewal_reminder", lang: str = "fi"
) -> Composed:
    return pipeline.compose(pipeline.sample(name, "acme", lang))


def _with(c: Composed, **change: str) -> Composed:
    return dataclasses.replace(c, rendered=dataclasses.replace(c.rendered, **change))


def test_each_lint_names_the_offending_text(pipeline: Pipeline) -> None:
    c = _composed(pipeline)
    assert language_problems(c, "sample") == []
    long = "x" * 71
    assert any(repr(long) in p for p in language_problems(_with(c, subject=long), "sample"))
    assert language_problems(_with(c, subject=long), "long domain") == []
    text = c.rendered.text
    cases = {
        "Voit soittaa klo 9.30 tai myöhemmin.": "time without its zone: 'klo 9.30'",
        "Please renew the domain.": "English in fi text: Please, domain, renew, the",
        "Aikaa on 0 päivää.": "count reads wrong: 0 päivää",
        "Katso https://example.fi/kauppa.": "URL glued to punctuation: https://example.fi/kauppa.",
        "päättyy 26.\njoulukuuta 2026": "line break inside a date",
    }
    for added, expected in cases.items():
        problems = language_problems(_with(c, text=text + "\n" + added + "\n"), "sample")
        assert any(expected in p for p in problems), (added, problems)
    # delimited by parentheses, with a zone: fine
    fine = "Hinnat (https://example.fi/hinnat). Soita klo 9.30 Suomen aikaa."
    assert language_problems(_with(c, text=text + fine), "sample") == []


def test_english_lint_ignores_brand_names_data_and_urls(pipeline: Pipeline) -> None:
    c = _composed(pipeline, "reseller.action_required", "sv")
    extra = "Acme Digital Oy https://example.fi/the/domain support@example.fi"
    assert (
        lints.english_problems(
            _with(c, text=c.rendered.text + extra).rendered, c.event.data, ["Acme Digital Oy"]
        )
        == []
    )


def test_duplicate_subjects_name_both_events() -> None:
    same = lints.duplicate_subjects(
        {"domain.renewed": "<domain> renewed", "domain.restored": "<domain> renewed"}
    )
    assert same == {"domain.restored": "domain.renewed"}


def test_date_break_lint_uses_the_readers_format(pipeline: Pipeline) -> None:
    c = _composed(pipeline, "domain.renewal_reminder", "sv")
    fmt = formatter("sv", "Europe/Helsinki", "sv-FI")
    broken = _with(c, text="löper ut den 26 december\n2026.").rendered
    assert lints.date_break_problems(broken, c.event.data, fmt)
    whole = _with(c, text="löper ut den 26\u00a0december\u00a02026.").rendered
    assert lints.date_break_problems(whole, c.event.data, fmt) == []


def test_variants_cover_counts_lists_and_domains(pipeline: Pipeline) -> None:
    labels = {label for label, _ in variants(pipeline, "whois.data_reminder", "acme", "fi")}
    assert {"sample", ".com", ".se", "long domain", "one of domains"} <= labels
    reminder = dict(variants(pipeline, "domain.renewal_reminder", "acme", "en"))
    assert reminder["days_left=0"].data.days_left == 0  # type: ignore[attr-defined]
    assert events.get("domain.renewal_reminder").mandatory
