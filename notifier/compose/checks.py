"""`notifier templates check`: render every event × language × brand with sample data.

A failure is a render error, a missing template, an undefined variable, HTML that
would not be safe in a mail client (script, external CSS, image without alt), or a
platform name or host in reseller-branded mail.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .. import events as catalog
from ..errors import NotifierError
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
        extra[".com"] = {"domain": "virtasenpuutarha.com"}
        extra[".se"] = {"domain": "lindqvistbygg.se"}
    for label, change in extra.items():
        data = catalog.validate_data(name, {**spec.sample, **change})
        yield label, dataclasses.replace(base, data=data)


def check_all(pipeline: Pipeline) -> list[CheckResult]:
    settings = pipeline.settings
    results: list[CheckResult] = []
    for brand in pipeline.brands.all():
        for lang in brand.languages:
            for name in catalog.CATALOG:
                for label, event in variants(pipeline, name, brand.id, lang):
                    results.append(_check_one(pipeline, event, brand.id, lang, label, settings))
    return results


def _check_one(
    pipeline: Pipeline, event: Event, brand_id: str, lang: str, label: str, settings: object
) -> CheckResult:
    name = event.name
    try:
        composed = pipeline.compose(event)
    except NotifierError as exc:
        return CheckResult(brand_id, name, lang, label, f"{type(exc).__name__}: {exc}")
    r = composed.rendered
    if r.language != lang and composed.brand.id == brand_id:
        return CheckResult(brand_id, name, lang, label, f"rendered in {r.language}, not {lang}")
    problems = html_problems(r.html)
    if problems:
        return CheckResult(brand_id, name, lang, label, "; ".join(problems))
    if not composed.brand.platform:
        blob = "\n".join((r.subject, r.text, r.html, _visible_head(composed)))
        found = leaks(blob, pipeline.settings.platform_names, pipeline.settings.platform_hosts)
        if found:
            return CheckResult(
                brand_id, name, lang, label, f"platform leak: {', '.join(found)}", leak=True
            )
    return CheckResult(brand_id, name, lang, label)


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
