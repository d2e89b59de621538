from __future__ import annotations

import pytest

from notifier import events
from notifier.errors import UnknownEvent, ValidationError

REQUIRED = {
    "domain.registered",
    "domain.renewal_reminder",
    "domain.renewed",
    "domain.auto_renew_failed",
    "domain.expired",
    "domain.redemption",
    "domain.deleted",
    "domain.restored",
    "contact.verification_required",
    "contact.verification_reminder",
    "contact.verified",
    "domain.suspended_unverified",
    "transfer.auth_code",
    "transfer.in_requested",
    "transfer.in_completed",
    "transfer.in_failed",
    "transfer.out_requested",
    "transfer.out_completed",
    "contact.registrant_change_requested",
    "contact.registrant_changed",
    "whois.data_reminder",
    "domain.nameservers_changed",
    "domain.dnssec_changed",
    "domain.contacts_updated",
    "privacy.enabled",
    "privacy.disabled",
    "forwarding.updated",
    "domain.lock_changed",
    "reseller.balance_low",
    "reseller.funds_added",
    "reseller.invoice_issued",
    "reseller.invoice_due_soon",
    "reseller.invoice_overdue",
    "reseller.discount_tier_changed",
    "reseller.client_access_changed",
    "reseller.commission_paid",
    "reseller.order_placed",
    "reseller.action_required",
}


def test_catalog_has_every_contract_event() -> None:
    assert REQUIRED <= set(events.CATALOG)


@pytest.mark.parametrize("name", sorted(events.CATALOG))
def test_sample_data_validates(name: str) -> None:
    spec = events.get(name)
    data = events.validate_data(name, dict(spec.sample))
    assert isinstance(data, spec.model)
    assert spec.audience == ("reseller" if name.startswith("reseller.") else "registrant")
    described = spec.describe()
    assert described["schema"]["properties"] and described["sample"] == dict(spec.sample)


def test_mandatory_notices_are_marked() -> None:
    for name in (
        "domain.renewal_reminder",
        "domain.expired",
        "whois.data_reminder",
        "contact.verification_required",
        "transfer.auth_code",
    ):
        assert events.get(name).mandatory, name
    assert not events.get("domain.nameservers_changed").mandatory


def test_unknown_event_lists_known_ones() -> None:
    with pytest.raises(UnknownEvent) as info:
        events.get("domain.exploded")
    message = str(info.value)
    assert "domain.exploded" in message and "domain.renewal_reminder" in message
    assert info.value.errors[0].loc == "event"


def test_missing_and_mistyped_fields_name_the_path() -> None:
    sample = dict(events.get("domain.renewal_reminder").sample)
    del sample["expires_at"]
    sample["days_left"] = "thirty"
    with pytest.raises(ValidationError) as info:
        events.validate_data("domain.renewal_reminder", sample)
    locs = {e.loc for e in info.value.errors}
    assert locs == {"data.expires_at", "data.days_left"}


def test_nested_field_path() -> None:
    sample = dict(events.get("reseller.balance_low").sample)
    sample["renewals_at_risk"] = [dict(sample["renewals_at_risk"][0], price={"amount": "x"})]
    with pytest.raises(ValidationError) as info:
        events.validate_data("reseller.balance_low", sample)
    assert [e.loc for e in info.value.errors] == ["data.renewals_at_risk[0].price.amount"]


def test_unknown_field_is_refused() -> None:
    sample = {**events.get("domain.renewed").sample, "colour": "blue"}
    with pytest.raises(ValidationError) as info:
        events.validate_data("domain.renewed", sample)
    assert info.value.errors[0].loc == "data.colour"


@pytest.mark.parametrize("bad", ["Aino\r\nBcc: x@evil.example", "a\nb", "nul\x00", "ls\u2028x"])
def test_line_breaks_are_refused_in_strings(bad: str) -> None:
    sample = {**events.get("transfer.out_requested").sample, "gaining_registrar": bad}
    with pytest.raises(ValidationError) as info:
        events.validate_data("transfer.out_requested", sample)
    assert info.value.errors[0].loc == "data.gaining_registrar"


def test_idn_domains_are_stored_in_unicode_and_tld_is_derived() -> None:
    sample = {**events.get("domain.renewed").sample, "domain": "XN--nekoskenpuutarha-unba.FI"}
    data = events.validate_data("domain.renewed", sample)
    assert data.domain == "äänekoskenpuutarha.fi"  # type: ignore[attr-defined]
    assert data.tld == "fi"  # type: ignore[attr-defined]


def test_tld_must_match_domain() -> None:
    sample = {**events.get("domain.renewed").sample, "tld": "se"}
    with pytest.raises(ValidationError):
        events.validate_data("domain.renewed", sample)


def test_naive_datetimes_are_refused() -> None:
    sample = {**events.get("domain.renewed").sample, "renewed_at": "2026-11-26T09:30:00"}
    with pytest.raises(ValidationError) as info:
        events.validate_data("domain.renewed", sample)
    assert info.value.errors[0].loc == "data.renewed_at"


def test_order_placed_client_copy_goes_out_in_the_reseller_brand() -> None:
    spec = events.get("reseller.order_placed")
    client = events.validate_data(spec.name, {**spec.sample, "copy_for": "client"})
    assert spec.audience_of(client) == "registrant"
    assert spec.audience_of(events.sample(spec.name)) == "reseller"


def test_catalog_document_gives_json_schema_for_every_event() -> None:
    doc = events.catalog_document()
    assert [e["name"] for e in doc["events"]] == list(events.CATALOG)
    reminder = next(e for e in doc["events"] if e["name"] == "domain.renewal_reminder")
    assert reminder["schema"]["title"] == "domain.renewal_reminder"
    assert reminder["schema"]["properties"]["days_left"]["type"] == "integer"
    assert "days_left" in reminder["schema"]["required"]
    assert reminder["brief"] == events.get("domain.renewal_reminder").brief
