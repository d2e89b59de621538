"""`notifier templates check`: render every event × language × brand with sample data.

A failure is a render error, a missing template, an undefined variable, HTML that
would not be safe in a mail client (script, external CSS, image without alt), a
platform name or host in reseller-branded mail, or a language lint (:mod:`.lints`):
over-long or shared subjects, a time without its zone, English words in fi/sv text,
"0 days", a URL glued to a full stop, a line break inside a date. The data variants
cover 0, 1 and many; long and IDN domains; .fi, .se and a gTLD.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .. import events as catalog
from ..errors import NotifierError
from ..i18n import formatter
from . import lints
from .links import leaks
from .pipeline import Composed, Pipeline
from .render import Event

_SCRIPT = re.compile(r"<script|javascript:|\son[a-z]+\s*=", re.IGNORECASE)
_EXTERNAL_CSS = re.compile(r"<link\b[^>]*stylesheet|@import", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class CheckResult:
    brand: str
    event: str
    language: str
    variant: str
    problem: str | None = None
    leak: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


def html_problems(html: str) -> list[str]:
    problems = []
    if _SCRIPT.search(html):
        problems.append("script or event handler in HTML")
    if _EXTERNAL_CSS.search(html):
        problems.append("external CSS in HTML")
    for tag in _IMG.findall(html):
        if " alt=" not in tag:
            problems.append("image without alt text")
    return problems


def variants(
    pipeline: Pipeline, name: str, brand_id: str, lang: str
) -> Iterator[tuple[str, Event]]:
    """The sample event, plus the data variants that change which text is shown."""
    base = pipeline.sample(name, brand_id, lang)
    yield "sample", base
    spec = catalog.get(name)
    extra: dict[str, dict[str, object]] = {}
    fields = spec.model.model_fields
    if "auto_renew" in fields:
        extra["auto_renew"] = {"auto_renew": not spec.sample.get("auto_renew", False)}
    if "copy_for" in fields:
        extra["client copy"] = {"copy_for": "client"}
    if "role" in fields:
        other = "new" if spec.sample.get("role") == "previous" else "previous"
        extra[f"role={other}"] = {"role": other}
    if "domain" in fields and "tld" in fields:
        gtld: dict[str, object] = {"domain": "virtasenpuutarha.com"}
        if "transfer_lock_until" in fields:  # a gTLD change of registrant has the lock
            gtld["transfer_lock_until"] = "2027-01-25T09:30:00+02:00"
        if "dns_stops_at" in fields:  # a gTLD may resolve a few days after expiry
            gtld["dns_stops_at"] = "2026-12-31T23:59:59+02:00"
        extra[".com"] = gtld
        extra[".se"] = {"domain": "lindqvistbygg.se"}
        extra[LONG] = {"domain": "pohjois-pohjanmaan-äänekosken-puutarhakeskus.fi"}
    for count in ("days_left", "days_overdue"):
        if count in fields:
            extra[f"{count}=0"] = {count: 0}
            extra[f"{count}=1"] = {count: 1}
    for listing in ("domains", "renewals_at_risk", "items", "nameservers", "changed"):
        value = spec.sample.get(listing)
        if isinstance(value, list) and len(value) > 1:
            extra[f"one of {listing}"] = {listing: value[:1]}
    for label, change in extra.items():
        data = catalog.validate_data(name, {**spec.sample, **change})
        yield label, dataclasses.replace(base, data=data)


#: the variant with a long domain name: subjects may exceed the length rule
LONG = "long domain"


def check_all(pipeline: Pipeline) -> list[CheckResult]:
    settings = pipeline.settings
    results: list[CheckResult] = []
    for brand in pipeline.brands.all():
        for lang in brand.languages:
            subjects: dict[str, str] = {}
            for name in catalog.CATALOG:
                for label, event in variants(pipeline, name, brand.id, lang):
                    result, subject = _check_one(pipeline, event, brand.id, lang, label, settings)
                    results.append(result)
                    if label == "sample" and subject is not None:
                        subjects[name] = subject
            for name, other in lints.duplicate_subjects(subjects).items():
                problem = f"same subject as {other}: {subjects[name]!r}"
                results.append(CheckResult(brand.id, name, lang, "sample", problem))
    return results


def language_problems(composed: Composed, label: str) -> list[str]:
    """The language lints of one rendered message (:mod:`.lints`)."""
    r, brand, data = composed.rendered, composed.brand, composed.event.data
    fmt = formatter(r.language, brand.timezone, brand.locale_for(r.language))
    names = [brand.name, brand.legal_name, composed.sender.display_name]
    return [
        *lints.subject_problems(r, long_domain=label == LONG),
        *lints.time_problems(r),
        *lints.english_problems(r, data, names),
        *lints.count_problems(r),
        *lints.url_problems(r),
        *lints.date_break_problems(r, data, fmt),
    ]


def _subject_key(composed: Composed) -> str:
    """The subject with the domain taken out: two events may not share their wording."""
    domain = getattr(composed.event.data, "domain", None)
    subject = composed.rendered.subject
    return subject.replace(domain, "<domain>") if isinstance(domain, str) else subject


def _check_one(
    pipeline: Pipeline, event: Event, brand_id: str, lang: str, label: str, settings: object
) -> tuple[CheckResult, str | None]:
    name = event.name
    try:
        composed = pipeline.compose(event)
    except NotifierError as exc:
        return CheckResult(brand_id, name, lang, label, f"{type(exc).__name__}: {exc}"), None
    r = composed.rendered
    if r.language != lang and composed.brand.id == brand_id:
        problem = f"rendered in {r.language}, not {lang}"
        return CheckResult(brand_id, name, lang, label, problem), None
    subject = _subject_key(composed)
    problems = html_problems(r.html)
    if problems:
        return CheckResult(brand_id, name, lang, label, "; ".join(problems)), subject
    if not composed.brand.platform:
        blob = "\n".join((r.subject, r.text, r.html, _visible_head(composed)))
        found = leaks(blob, pipeline.settings.platform_names, pipeline.settings.platform_hosts)
        if found:
            problem = f"platform leak: {', '.join(found)}"
            return CheckResult(brand_id, name, lang, label, problem, leak=True), subject
    problems = language_problems(composed, label)
    return CheckResult(brand_id, name, lang, label, "; ".join(problems) or None), subject


def _visible_head(composed: Composed) -> str:
    """The headers that must not name the platform. Mail sent from the platform's
    domain on a reseller's behalf (its DNS not verified yet) carries the platform's
    domain in From and Message-ID by design: those two are the sender decision's."""
    head = composed.outgoing.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    if not composed.sender.via_platform:
        return head
    lines = re.sub(r"\r\n[ \t]+", " ", head).split("\r\n")
    return "\n".join(
        line for line in lines if not line.lower().startswith(("from:", "message-id:"))
    )
