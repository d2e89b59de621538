"""Every event has a title in every mail language, and no two events share one."""

from __future__ import annotations

import pytest

from notifier import events
from notifier.brands import LANGUAGES
from notifier.events.titles import TITLES


def test_every_event_has_a_title_in_every_language() -> None:
    assert set(TITLES) == set(events.CATALOG)
    for name, titles in TITLES.items():
        assert set(titles) == set(LANGUAGES), name
        assert all(t.strip() and t == t.strip() for t in titles.values()), name


@pytest.mark.parametrize("lang", LANGUAGES)
def test_titles_are_unique_within_a_language(lang: str) -> None:
    seen = [events.title(name, lang) for name in events.CATALOG]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("lang", ["fi", "sv"])
def test_fi_sv_titles_are_not_the_english_ones(lang: str) -> None:
    same = [n for n in events.CATALOG if events.title(n, lang) == events.title(n, "en")]
    assert same == []


def test_unknown_event_or_language_falls_back() -> None:
    assert events.title("domain.renewed", "de") == "Domain renewed"
    assert events.title("no.such_event", "fi") == "no.such_event"
