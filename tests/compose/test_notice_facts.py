"""What a mandatory notice says must be true for the domain's TLD: one test per wrong
statement found in the native-level review (issue 12 §1), each in every language."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from notifier import events
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Rendered

LANGS = ("fi", "sv", "en")


def render(
    pipeline: Pipeline, name: str, lang: str, brand: str = "acme", **change: Any
) -> Rendered:
    base = pipeline.sample(name, brand, lang)
    data = events.validate_data(name, {**events.get(name).sample, **change})
    return pipeline.compose(dataclasses.replace(base, data=data)).rendered


def flat(r: Rendered) -> str:
    """Subject and text part, line breaks and no-break spaces as plain spaces, and
    without the bar in front of a notice's lines."""
    lines = [line.removeprefix("| ") for line in f"{r.subject}\n{r.text}".split("\n")]
    return " ".join(" ".join(lines).replace("\u00a0", " ").split())


# --- domain.expired: a .fi name has stopped working by the time the notice arrives ----

FUTURE_STOP = {"fi": "lakkaavat toimimasta", "sv": "slutar fungera", "en": "stop working"}
STOPPED = {"fi": "ovat lakanneet toimimasta", "sv": "har slutat fungera", "en": "have stopped"}


@pytest.mark.parametrize("lang", LANGS)
def test_expired_fi_says_site_and_mail_have_stopped(pipeline: Pipeline, lang: str) -> None:
    # even when the producer sends a later dns_stops_at, .fi stops at expiry
    r = render(pipeline, "domain.expired", lang, dns_stops_at="2026-12-31T23:59:59+02:00")
    text = flat(r)
    assert STOPPED[lang] in text
    assert FUTURE_STOP[lang] not in text


@pytest.mark.parametrize("domain", ["virtasenpuutarha.com", "lindqvistbygg.se"])
@pytest.mark.parametrize("lang", LANGS)
def test_expired_already_stopped_is_past_tense(pipeline: Pipeline, lang: str, domain: str) -> None:
    # dns_stops_at at expiry: no future tense for what has already happened (sv gTLD)
    r = render(pipeline, "domain.expired", lang, domain=domain)
    assert FUTURE_STOP[lang] not in flat(r)


@pytest.mark.parametrize("lang", LANGS)
def test_expired_gtld_later_stop_is_announced(pipeline: Pipeline, lang: str) -> None:
    r = render(
        pipeline,
        "domain.expired",
        lang,
        domain="virtasenpuutarha.com",
        dns_stops_at="2026-12-31T23:59:59+02:00",
    )
    assert FUTURE_STOP[lang] in flat(r)
    assert STOPPED[lang] not in flat(r)


# --- contact.registrant_changed: the 60-day lock is ICANN's, not Traficom's or IIS's ----

LOCK_WORDS = ("siirtoluk", "60 päivän", "Spärr", "spärr", "60 dagar", "lock", "60 days")


@pytest.mark.parametrize("domain", ["äänekoskenpuutarha.fi", "lindqvistbygg.se", "kustwebb.nu"])
@pytest.mark.parametrize("lang", LANGS)
def test_registrant_changed_cctld_has_no_transfer_lock(
    pipeline: Pipeline, lang: str, domain: str
) -> None:
    for role in ("previous", "new"):
        r = render(
            pipeline,
            "contact.registrant_changed",
            lang,
            domain=domain,
            role=role,
            transfer_lock_until="2027-01-25T09:30:00+02:00",
        )
        found = [w for w in LOCK_WORDS if w in flat(r)]
        assert not found, (domain, role, found)


@pytest.mark.parametrize("lang", LANGS)
def test_registrant_changed_gtld_shows_the_lock(pipeline: Pipeline, lang: str) -> None:
    r = render(
        pipeline,
        "contact.registrant_changed",
        lang,
        domain="virtasenpuutarha.com",
        transfer_lock_until="2027-01-25T09:30:00+02:00",
    )
    assert "25" in flat(r) and any(w in flat(r) for w in LOCK_WORDS)


# --- contact.registrant_change_requested: the .fi holder-change key, in every language ----

KEY = {"fi": "siirtoavain", "sv": "överföringskod", "en": "holder-change key"}


@pytest.mark.parametrize("role", ["previous", "new"])
@pytest.mark.parametrize("lang", LANGS)
def test_change_requested_fi_names_the_holder_change_key(
    pipeline: Pipeline, lang: str, role: str
) -> None:
    text = flat(render(pipeline, "contact.registrant_change_requested", lang, role=role))
    assert KEY[lang] in text
    assert "30" in text and "Traficom" in text


@pytest.mark.parametrize("lang", LANGS)
def test_change_requested_gtld_has_no_holder_change_key(pipeline: Pipeline, lang: str) -> None:
    r = render(pipeline, "contact.registrant_change_requested", lang, domain="example.com")
    assert KEY[lang] not in flat(r)


# --- counts: no "0 days", no "1 days", in any count-bearing phrase ----------------------

ZERO = (
    "0 days",
    "0 day",
    "0 päivä",
    "0 päivää",
    "0 dagar",
    "0 dag",
    "1 days",
    "1 päivää",
    "1 dagar",
)


def _words(text: str) -> str:
    return f" {text} "


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("domain.renewal_reminder", "days_left"),
        ("contact.verification_reminder", "days_left"),
        ("reseller.invoice_overdue", "days_overdue"),
    ],
)
@pytest.mark.parametrize("auto_renew", [False, True])
def test_no_zero_or_wrong_singular_counts(
    pipeline: Pipeline, lang: str, name: str, field: str, auto_renew: bool
) -> None:
    for count in (0, 1):
        change: dict[str, Any] = {field: count}
        if name == "domain.renewal_reminder":
            change["auto_renew"] = auto_renew
        text = _words(flat(render(pipeline, name, lang, **change)))
        bad = [z for z in ZERO if f" {z} " in text or f" {z}." in text or f" {z}," in text]
        assert not bad, (name, count, bad)


TODAY = {"fi": "tänään", "sv": "i dag", "en": "today"}


@pytest.mark.parametrize("lang", LANGS)
def test_renewal_reminder_on_the_last_day_says_today(pipeline: Pipeline, lang: str) -> None:
    r = render(pipeline, "domain.renewal_reminder", lang, days_left=0)
    assert TODAY[lang] in r.subject
    assert TODAY[lang] in r.text


# --- .se/.nu: deactivated about ten days after expiry, renewable 60 days more -----------
# (Internetstiftelsen), so no language may take the gTLD deletion day count for .se

SE_STAGES = {
    "fi": ("poistetaan käytöstä", "kahden kuukauden"),
    "sv": ("deaktiveras", "60 dagar"),
    "en": ("deactivated", "60 days"),
}
GTLD_DELETION = {"fi": "30 päivää", "sv": "30 dagar", "en": "30 days"}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(
    "name", ["domain.registered", "domain.renewal_reminder", "domain.auto_renew_failed"]
)
def test_se_expiry_stages_are_internetstiftelsens(pipeline: Pipeline, lang: str, name: str) -> None:
    change: dict[str, Any] = {"domain": "lindqvistbygg.se"}
    if name == "domain.registered":
        change["deletion_days_after_expiry"] = 30
    if name == "domain.renewal_reminder":
        change["days_left"] = 12  # the sample's 30 days left is not a deletion count
    text = flat(render(pipeline, name, lang, brand="kustwebb", **change))
    for words in SE_STAGES[lang]:
        assert words in text, (name, words)
    assert GTLD_DELETION[lang] not in text


# --- samples agree with each other and with their recipient ---------------------------


def test_fi_samples_agree_on_the_protection_period() -> None:
    expired = events.sample("domain.expired")
    redemption = events.sample("domain.redemption")
    assert expired.tld == redemption.tld == "fi"
    assert redemption.redemption_ends_at == expired.renewable_until
    assert 28 <= (expired.renewable_until - expired.expired_at).days <= 31  # one month
    assert expired.dns_stops_at <= expired.expired_at  # .fi stops at expiry


@pytest.mark.parametrize(
    "name", ["contact.registrant_changed", "contact.registrant_change_requested"]
)
def test_registrant_samples_address_the_right_party(pipeline: Pipeline, name: str) -> None:
    event = pipeline.sample(name, "acme", "en")
    data = event.data
    party = data.previous_registrant if data.role == "previous" else data.new_registrant
    assert event.recipient.name == party
    if data.tld in ("fi", "se", "nu") and name == "contact.registrant_changed":
        assert data.transfer_lock_until is None


# --- reseller.action_required: no English free text in fi/sv mail -----------------------


@pytest.mark.parametrize("lang", ["fi", "sv"])
@pytest.mark.parametrize("action", ["registrant_email_missing", "payment_method_required"])
def test_action_required_known_action_is_localised(
    pipeline: Pipeline, lang: str, action: str
) -> None:
    description = "The registrant of kahvila-helmi.fi has no e-mail address on file."
    r = render(pipeline, "reseller.action_required", lang, action=action, description=description)
    assert description not in r.text and description not in r.html


QUOTED = {"fi": "Kuvaus järjestelmästämme sellaisenaan", "sv": "Beskrivning från vårt system"}


@pytest.mark.parametrize("lang", ["fi", "sv"])
@pytest.mark.parametrize("action", ["document_required", "other"])
def test_action_required_free_text_is_marked_as_quoted(
    pipeline: Pipeline, lang: str, action: str
) -> None:
    description = "Please send a copy of the trade register extract."
    r = render(pipeline, "reseller.action_required", lang, action=action, description=description)
    text = flat(r)
    assert f"”{description}”" in text
    assert text.index(QUOTED[lang]) < text.index(description)
