"""Issue 10 §4: no header line exceeds 998 octets, whatever the input.

The fields that reach a Subject are found from the templates themselves (the names the
``subject`` block reads, in every language and brand override), so a new event or a
changed subject is covered without editing this file. Every event's free-text subject
fields and the recipient's display name get hostile values (long unbroken tokens,
long texts, any Unicode); every line of the head must stay within 998 octets, within
78 where there is whitespace to fold at, and Python's ``email`` parser must give back
exactly the rendered subject and name.
"""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import nodes

from notifier import events as catalog
from notifier.compose import mime
from notifier.compose.pipeline import Composed, Pipeline
from notifier.config import PROJECT_ROOT
from notifier.errors import ValidationError

LANGUAGES = ("en", "fi", "sv")
TEMPLATE_DIRS = [PROJECT_ROOT / "templates", *sorted((PROJECT_ROOT / "brands").glob("*/templates"))]


def _subject_names(path: Path) -> set[str]:
    """The variables a template's ``subject`` block reads."""
    tree = jinja2.Environment().parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for block in tree.find_all(nodes.Block):
        if block.name == "subject":
            names |= {n.name for n in block.find_all(nodes.Name) if n.ctx == "load"}
    return names


def _is_free_text(event: str, field: str) -> bool:
    """Does ``field`` of ``event`` accept any text (not a domain, date, code or choice)?"""
    data = {**catalog.CATALOG[event].sample, field: "Free text, ÅÄÖ 1"}
    try:
        catalog.validate_data(event, data, "data")
    except ValidationError:
        return False
    return True


def subject_fields() -> dict[str, list[str]]:
    """Per event: the free-text data fields that reach its Subject."""
    found: dict[str, list[str]] = {}
    for name, spec in catalog.CATALOG.items():
        names: set[str] = set()
        for folder in TEMPLATE_DIRS:
            for lang in LANGUAGES:
                path = folder / lang / f"{name}.jinja"
                if path.exists():
                    names |= _subject_names(path)
        fields = sorted(
            f
            for f in names
            if isinstance(spec.sample.get(f), str) and f != "domain" and _is_free_text(name, f)
        )
        if fields:
            found[name] = fields
    return found


SUBJECT_FIELDS = subject_fields()
CASES = [(event, field) for event, fields in SUBJECT_FIELDS.items() for field in fields]
#: events whose Subject shows the domain (a long domain name is a long token too)
DOMAIN_EVENTS = [
    name
    for name, spec in catalog.CATALOG.items()
    if "domain" in spec.sample
    and any(
        "domain" in _subject_names(folder / lang / f"{name}.jinja")
        for folder in TEMPLATE_DIRS
        for lang in LANGUAGES
        if (folder / lang / f"{name}.jinja").exists()
    )
]


def test_the_subject_fields_are_found_from_the_templates() -> None:
    """The discovery works: the fields the issue names are among those found."""
    assert "invoice_number" in SUBJECT_FIELDS["reseller.invoice_overdue"]
    assert "order_number" in SUBJECT_FIELDS.get("reseller.order_placed", ["order_number"])
    assert len(CASES) >= 5
    assert "domain.renewal_reminder" in DOMAIN_EVENTS


# --- strategies --------------------------------------------------------------------------

#: what SafeStr accepts: any character but controls, surrogates and line separators
_CHAR = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85\u2028\u2029"
)
_TOKEN = st.text(alphabet="0123456789ABCDEF-/.", min_size=1, max_size=3000)
_WORDS = st.lists(
    st.one_of(st.text(_CHAR, min_size=1, max_size=12), _TOKEN), min_size=1, max_size=30
).map(" ".join)
TEXT = st.one_of(
    _TOKEN,  # one long unbroken token (a 3,000-character invoice number)
    _WORDS,  # words and tokens, ASCII or not
    st.text(_CHAR, min_size=1, max_size=400),
    st.text(alphabet="ab =?", min_size=1, max_size=300),  # encoded-word look-alikes
).filter(lambda s: s.strip() != "")
NAME = st.one_of(
    st.none(), st.text(_CHAR, min_size=1, max_size=200), _WORDS.map(lambda s: s[:200])
).filter(lambda s: s is None or s.strip() != "")


def _raw(event: str, data: dict[str, Any], lang: str, name: str | None) -> dict[str, Any]:
    recipient: dict[str, Any] = {"email": "aino.virtanen@example.fi", "language": lang}
    if name is not None:
        recipient["name"] = name
    return {"event": event, "brand": "acme", "recipient": recipient, "data": data}


def _head(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _check(composed: Composed, name: str | None) -> None:
    data = composed.outgoing.data
    head = _head(data)
    for line in head:
        assert len(line) <= 998, line[:80]
    subject = composed.rendered.subject
    subject_lines = _field_lines(head, b"Subject")
    words_fit = all(len(w) <= mime.WIDTH - len("Subject: ") for w in subject.split(" "))
    if subject.isascii() and "=?" not in subject and words_fit:
        # there is whitespace to fold at: the Subject stays within 78 characters a line
        assert all(len(line) <= mime.WIDTH for line in subject_lines), subject_lines
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == subject
    (to,) = parsed["To"].addresses
    assert to.addr_spec == "aino.virtanen@example.fi"
    to_value = b"".join(_field_lines(head, b"To")).decode("ascii")[len("To: ") :]
    assert _display_name(to_value) == (" ".join(name.split()) if name else "")


def _display_name(value: str) -> str:
    """The display name in an unfolded ``Name <addr>`` value, decoded per RFC 2047.

    Encoded names are decoded with :func:`email.header.decode_header`, which follows
    §6.2 (space between adjacent encoded-words is not part of the text); the newer
    address parser of ``email.policy.default`` keeps that space inside a display name
    (a CPython quirk mail clients do not share). Other names go through that parser."""
    if "=?" not in value:
        parsed = email.message_from_bytes(
            f"To: {value}\r\n\r\n".encode(), policy=email.policy.default
        )
        (address,) = parsed["To"].addresses
        return str(address.display_name)
    phrase = value.rsplit(" <", 1)[0]
    return "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in decode_header(phrase)
    )


def _field_lines(head: list[bytes], field: bytes) -> list[bytes]:
    lines: list[bytes] = []
    for line in head:
        if line.startswith(field + b":"):
            lines.append(line)
        elif lines and line[:1] in (b" ", b"\t"):
            lines.append(line)
        elif lines:
            break
    return lines


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(CASES),
    value=TEXT,
    lang=st.sampled_from(LANGUAGES),
    name=NAME,
)
def test_no_header_line_exceeds_998_octets_for_any_subject_field(
    pipeline: Pipeline, case: tuple[str, str], value: str, lang: str, name: str | None
) -> None:
    event, field = case
    data = {**catalog.CATALOG[event].sample, field: value}
    _check(pipeline.prepare(_raw(event, data, lang, name)), name)


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789äö", min_size=1, max_size=63)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(DOMAIN_EVENTS),
    labels=st.lists(_LABEL, min_size=1, max_size=5),
    lang=st.sampled_from(LANGUAGES),
)
def test_a_long_domain_name_in_the_subject_folds_too(
    pipeline: Pipeline, event: str, labels: list[str], lang: str
) -> None:
    domain = ".".join(label.strip("-") or "a" for label in labels) + ".fi"
    data = {**catalog.CATALOG[event].sample, "domain": domain}
    try:
        composed = pipeline.prepare(_raw(event, data, lang, None))
    except ValidationError:
        return  # not a domain name (too long, a bad IDN label): refused at intake
    _check(composed, None)


def test_a_3000_character_invoice_number(pipeline: Pipeline) -> None:
    """The issue's case, through the whole sequence: the line was 3,001 octets."""
    number = "9" * 3000
    data = {**catalog.CATALOG["reseller.invoice_overdue"].sample, "invoice_number": number}
    composed = pipeline.prepare(_raw("reseller.invoice_overdue", data, "en", None))
    assert number in composed.rendered.subject
    _check(composed, None)
    subject = _field_lines(_head(composed.outgoing.data), b"Subject")
    assert len(subject) > 40  # folded: the prefix's words, then encoded-words
    assert max(len(line) for line in subject) <= len("Subject: ") + 72


# --- the header builders themselves ------------------------------------------------------


@pytest.mark.parametrize("used", [len("From: "), len("To: "), len("Reply-To: ")])
@settings(max_examples=200, deadline=None)
@given(name=NAME)
def test_display_names_fold_and_decode(used: int, name: str | None) -> None:
    value = mime.address(name, "aino@example.fi", used)
    lines = ("X" * (used - 2) + ": " + value).split("\r\n")
    assert all(len(line) <= 998 for line in lines)
    if name and name.isascii() and all(len(w) < 60 for w in name.split()):
        assert all(len(line) <= mime.WIDTH for line in lines), lines
    parsed = email.message_from_bytes(
        b"To: " + value.encode() + b"\r\n\r\n", policy=email.policy.default
    )
    (to,) = parsed["To"].addresses
    assert to.addr_spec == "aino@example.fi"
    assert _display_name(value.replace("\r\n", "")) == (" ".join(name.split()) if name else "")


def test_short_headers_are_unchanged() -> None:
    """What fits stays on one line, byte for byte as before (the golden files)."""
    assert mime.header_text("Maksumuistutus: lasku 2026-10-10042", "s") == (
        "Maksumuistutus: lasku 2026-10-10042"
    )
    assert mime.address("Acme Digital", "tuki@acme.fi") == "Acme Digital <tuki@acme.fi>"
    assert mime.address("Acme, Oy", "tuki@acme.fi") == '"Acme, Oy" <tuki@acme.fi>'


def test_words_fold_at_spaces_within_78_and_long_tokens_become_encoded_words() -> None:
    text = "Invoice " + "1" * 200 + " and " + "2" * 100 + " " + "3" * 100 + " is overdue now"
    folded = mime.header_text(text, "subject")
    lines = ("Subject: " + folded).split("\r\n")
    assert all(len(line) <= mime.WIDTH for line in lines), lines
    assert lines[0] == "Subject: Invoice"
    assert lines[-1].endswith("?= is overdue now")
    assert " and" in folded  # short words stay readable
    parsed = email.message_from_bytes(
        ("Subject: " + folded + "\r\n\r\n").encode(), policy=email.policy.default
    )
    assert parsed["Subject"] == text
