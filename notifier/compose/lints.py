"""Language lints for `notifier templates check`: what a native reader would trip over.

Each lint looks at one rendered message (or, for subjects, at all events of a brand and
language) and returns the offending text, so that a failure names the event, language,
brand and the words. Rules (docs/STYLE.md): subjects at most ~70 characters; every time
of day with its zone; no English words in Finnish or Swedish text outside brand names,
data and URLs; no "0 days" / "1 days"; no URL glued to punctuation; no line break inside
a date in the text part.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from ..i18n import ZONE_NAMES, Formatter
from .render import Rendered

#: subjects longer than this are cut off in most inbox lists (with a typical domain)
SUBJECT_MAX = 70

#: "klo 9.30", "kl. 8–16", "09:30", "10:00–18:00": a time of day (or a range of hours)
_TIME = {
    "fi": re.compile(r"\bklo[ \xa0]\d{1,2}(?:[.:]\d{2})?(?:[–-]\d{1,2}(?:[.:]\d{2})?)?"),
    "sv": re.compile(r"\bkl\.?[ \xa0]\d{1,2}(?:[.:]\d{2})?(?:[–-]\d{1,2}(?:[.:]\d{2})?)?"),
    "en": re.compile(
        r"\b\d{1,2}:\d{2}(?:[ \u202f]?[AaPp][Mm])?(?:[–-]\d{1,2}:\d{2}(?:[ \u202f]?[AaPp][Mm])?)?"
    ),
}
_ZONE_WORDS = {
    lang: tuple(sorted({names[lang] for names in ZONE_NAMES.values()} | {"("}, key=len))
    for lang in ("fi", "sv", "en")
}

#: common English words that are not also Finnish or Swedish words
ENGLISH = frozenset(
    "the and your you please click here domain renew renewal account invoice expires "
    "expired with will this that from payment customer support registrant email e-mail "
    "update now today days".split()
)
_WORD = re.compile(r"[A-Za-zÅÄÖåäö-]+")
_URL = re.compile(r"https?://\S+")
_EMAIL = re.compile(r"\S+@\S+")
_PUNCT = ".,;:!?"
_BAD_COUNT = re.compile(
    r"(?<![\d,.])(?:0[ \xa0][^\W\d]+|1[ \xa0](?:days|päivää|dagar|years|vuotta|domains))\b"
)


def subject_problems(r: Rendered, long_domain: bool) -> list[str]:
    if not long_domain and len(r.subject) > SUBJECT_MAX:
        return [f"subject longer than {SUBJECT_MAX} characters ({len(r.subject)}): {r.subject!r}"]
    return []


def _clean(text: str) -> str:
    return text.replace("\xa0", " ").replace("\u202f", " ")


def time_problems(r: Rendered) -> list[str]:
    pattern = _TIME.get(r.language)
    if pattern is None:
        return []
    problems = []
    for part in (r.subject, r.text):
        for m in pattern.finditer(part):
            after = _clean(part[m.end() : m.end() + 40]).lstrip(" ")
            if not after.startswith(_ZONE_WORDS[r.language]):
                problems.append(f"time without its zone: {_clean(m.group(0))!r}")
    return problems


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def english_problems(r: Rendered, data: BaseModel, names: list[str]) -> list[str]:
    """English words in fi/sv subject and text, once URLs, addresses, brand names and
    the event's own data (names, descriptions quoted from the system) are taken out."""
    if r.language == "en":
        return []
    text = _EMAIL.sub(" ", _URL.sub(" ", f"{r.subject}\n{r.text}"))
    for value in sorted({*names, *_strings(data)}, key=len, reverse=True):
        if len(value) > 3:  # not a TLD or a currency code
            text = text.replace(value, " ")
    found = sorted({w for w in _WORD.findall(text) if w.lower() in ENGLISH})
    return [f"English in {r.language} text: {', '.join(found)}"] if found else []


def count_problems(r: Rendered) -> list[str]:
    found = {_clean(m.group(0)) for part in (r.subject, r.text) for m in _BAD_COUNT.finditer(part)}
    return [f"count reads wrong: {', '.join(sorted(found))}"] if found else []


def url_problems(r: Rendered) -> list[str]:
    """ "…/kauppa." makes many clients link the full stop too; "(…/pricing)." is
    delimited by its parentheses (RFC 3986 appendix C)."""
    found = [
        url
        for url in _URL.findall(r.text)
        if url[-1] in _PUNCT and not url.rstrip(_PUNCT).endswith(")")
    ]
    return [f"URL glued to punctuation: {', '.join(found)}"] if found else []


def _dates(value: Any) -> Iterator[date]:
    if isinstance(value, date):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _dates(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _dates(item)


def date_break_problems(r: Rendered, data: BaseModel, fmt: Formatter) -> list[str]:
    """A date of the event's data written across two lines of the text part."""
    problems = []
    for when in set(_dates(data)):
        if isinstance(when, datetime) and when.tzinfo is None:
            continue
        words = fmt.date(when).split()
        if len(words) < 2:
            continue
        spaced = re.compile(r"[ \xa0]*(?:\n[| ]*)?[ \xa0]*".join(re.escape(w) for w in words))
        problems += [
            f"line break inside a date: {m.group(0)!r}"
            for m in spaced.finditer(r.text)
            if "\n" in m.group(0)
        ]
    return problems


def duplicate_subjects(subjects: dict[str, str]) -> dict[str, str]:
    """``{event: subject}`` → ``{event: other event with the same subject}``."""
    seen: dict[str, str] = {}
    same: dict[str, str] = {}
    for event, subject in subjects.items():
        if subject in seen:
            same[event] = seen[subject]
        else:
            seen[subject] = event
    return same
