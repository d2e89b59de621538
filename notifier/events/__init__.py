"""The event catalog: one typed schema per domain-lifecycle or account event.

The event names are the API contract. Each :class:`EventSpec` says who the mail is for
(``registrant`` mail goes out in the reseller's brand, ``reseller`` mail in the
platform's own), whether it is a legally required notice (``mandatory``: no
unsubscribe, never suppressed), the data it needs (a pydantic model), realistic sample
data for previews, and what the notice must say (``brief``, for template authors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..errors import FieldError, UnknownEvent, ValidationError, from_pydantic
from ..fields import DomainName, Email, HttpUrl, Money, SafeStr, decimal_value, domain_to_ascii

Audience = Literal["registrant", "reseller"]

PosInt = Annotated[int, Field(ge=0, strict=True)]
Years = Annotated[int, Field(ge=1, le=10, strict=True)]


class EventData(BaseModel):
    """Base of every event's data: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DomainEvent(EventData):
    """Registrant events are about one domain; ``tld`` drives the TLD-specific wording."""

    domain: DomainName
    tld: SafeStr | None = Field(
        default=None, description="Top-level domain without the dot; derived from `domain`."
    )

    @pydantic.model_validator(mode="after")
    def _derive_tld(self) -> DomainEvent:
        derived = domain_to_ascii(self.domain).rsplit(".", 1)[-1]
        if self.tld is not None and self.tld.lstrip(".").lower() != derived:
            raise ValueError(f"tld {self.tld!r} does not match domain {self.domain!r}")
        object.__setattr__(self, "tld", derived)
        return self


class Contact(EventData):
    name: SafeStr
    organization: SafeStr | None = None
    address: list[SafeStr] = Field(min_length=1, max_length=6)
    email: Email
    phone: SafeStr | None = None


class RiskItem(EventData):
    domain: DomainName
    expires_at: AwareDatetime
    price: Money


class OrderItem(EventData):
    domain: DomainName
    operation: Literal["register", "renew", "transfer", "restore"]
    years: Years = 1
    price: Money


# --- registrant events -----------------------------------------------------------


class DomainRegistered(DomainEvent):
    registered_at: AwareDatetime
    expires_at: AwareDatetime
    years: Years
    auto_renew: bool
    manage_url: HttpUrl
    fees_url: HttpUrl = Field(
        description="Where renewal, late-renewal and restore fees are published."
    )
    deletion_days_after_expiry: PosInt = Field(
        default=30,
        description="gTLDs: days after expiry until an unrenewed name is deleted (.fi and .se/.nu follow their registry rules).",
    )


class RenewalReminder(DomainEvent):
    expires_at: AwareDatetime
    days_left: Annotated[int, Field(ge=0, le=400, strict=True)]
    auto_renew: bool
    price: Money
    years: Years = 1
    renew_url: HttpUrl


class DomainRenewed(DomainEvent):
    renewed_at: AwareDatetime
    expires_at: AwareDatetime
    years: Years
    price: Money | None = None
    manage_url: HttpUrl


class AutoRenewFailed(DomainEvent):
    expires_at: AwareDatetime
    reason: Literal["payment_failed", "card_expired", "insufficient_funds", "registry_error"]
    price: Money
    renew_url: HttpUrl


class DomainExpired(DomainEvent):
    expired_at: AwareDatetime
    dns_stops_at: AwareDatetime = Field(description="When the website and e-mail stop working.")
    renewable_until: AwareDatetime = Field(description="Last moment to renew before deletion.")
    price: Money
    renew_url: HttpUrl


class DomainRedemption(DomainEvent):
    redemption_ends_at: AwareDatetime
    restore_price: Money
    restore_url: HttpUrl


class DomainDeleted(DomainEvent):
    deleted_at: AwareDatetime
    available_from: AwareDatetime | None = Field(
        default=None, description="When the name is free for anyone to register."
    )
    register_url: HttpUrl | None = None


class DomainRestored(DomainEvent):
    restored_at: AwareDatetime
    expires_at: AwareDatetime
    price: Money | None = None
    manage_url: HttpUrl


class VerificationRequired(DomainEvent):
    email: Email = Field(description="The address being verified.")
    domains: list[DomainName] = Field(default_factory=list, description="Other domains affected.")
    verify_url: HttpUrl
    deadline: AwareDatetime
    trigger: Literal["registration", "transfer", "registrant_change", "bounce", "data_change"] = (
        "registration"
    )


class VerificationReminder(DomainEvent):
    email: Email
    domains: list[DomainName] = Field(default_factory=list)
    verify_url: HttpUrl
    deadline: AwareDatetime
    days_left: Annotated[int, Field(ge=0, le=15, strict=True)]


class ContactVerified(DomainEvent):
    email: Email
    verified_at: AwareDatetime
    domains: list[DomainName] = Field(default_factory=list)


class SuspendedUnverified(DomainEvent):
    email: Email
    suspended_at: AwareDatetime
    verify_url: HttpUrl


class AuthCode(DomainEvent):
    auth_code: Annotated[SafeStr, Field(min_length=6, max_length=64)]
    issued_at: AwareDatetime
    valid_until: AwareDatetime | None = Field(
        default=None, description="When the code stops working; gTLD auth codes are valid 14 days."
    )


class TransferInRequested(DomainEvent):
    requested_at: AwareDatetime
    approve_url: HttpUrl
    approve_by: AwareDatetime
    losing_registrar: SafeStr | None = None


class TransferInCompleted(DomainEvent):
    completed_at: AwareDatetime
    expires_at: AwareDatetime
    manage_url: HttpUrl


class TransferInFailed(DomainEvent):
    failed_at: AwareDatetime
    reason: Literal[
        "auth_code_invalid", "rejected_by_registrant", "domain_locked", "expired", "registry_error"
    ]
    retry_url: HttpUrl


class TransferOutRequested(DomainEvent):
    requested_at: AwareDatetime
    gaining_registrar: SafeStr
    auto_approve_at: AwareDatetime
    approve_url: HttpUrl
    deny_url: HttpUrl


class TransferOutCompleted(DomainEvent):
    completed_at: AwareDatetime
    gaining_registrar: SafeStr


class RegistrantChangeRequested(DomainEvent):
    role: Literal["previous", "new"] = Field(description="Which registrant this copy goes to.")
    previous_registrant: SafeStr
    new_registrant: SafeStr
    requested_at: AwareDatetime
    confirm_url: HttpUrl
    confirm_by: AwareDatetime
    lock_opt_out_url: HttpUrl | None = Field(
        default=None, description="Link to opt out of the 60-day transfer lock (gTLDs)."
    )


class RegistrantChanged(DomainEvent):
    role: Literal["previous", "new"]
    previous_registrant: SafeStr
    new_registrant: SafeStr
    changed_at: AwareDatetime
    transfer_lock_until: AwareDatetime | None = Field(
        default=None, description="End of the 60-day transfer lock; absent when opted out."
    )


class WhoisDataReminder(DomainEvent):
    contact: Contact
    domains: list[DomainName] = Field(default_factory=list, description="Other domains concerned.")
    update_url: HttpUrl


class NameserversChanged(DomainEvent):
    nameservers: list[DomainName] = Field(min_length=1, max_length=13)
    changed_at: AwareDatetime
    manage_url: HttpUrl


class DnssecChanged(DomainEvent):
    enabled: bool
    changed_at: AwareDatetime
    manage_url: HttpUrl


class ContactsUpdated(DomainEvent):
    changed_at: AwareDatetime
    changed: list[Literal["registrant", "admin", "tech", "billing"]] = Field(min_length=1)
    manage_url: HttpUrl


class PrivacyEnabled(DomainEvent):
    changed_at: AwareDatetime
    manage_url: HttpUrl


class PrivacyDisabled(DomainEvent):
    changed_at: AwareDatetime
    manage_url: HttpUrl


class ForwardingUpdated(DomainEvent):
    changed_at: AwareDatetime
    target_url: HttpUrl | None = Field(
        default=None, description="Absent when forwarding was removed."
    )
    permanent: bool = True
    manage_url: HttpUrl


class LockChanged(DomainEvent):
    locked: bool
    changed_at: AwareDatetime
    manage_url: HttpUrl


# --- reseller account events -------------------------------------------------------


class ResellerEvent(EventData):
    reseller_name: SafeStr
    account_id: SafeStr


class BalanceLow(ResellerEvent):
    balance: Money
    threshold: Money
    renewals_at_risk: list[RiskItem] = Field(default_factory=list)
    topup_url: HttpUrl


class FundsAdded(ResellerEvent):
    amount: Money
    balance: Money
    method: Literal["card", "paypal", "online_bank", "bank_transfer"]
    receipt_number: SafeStr
    added_at: AwareDatetime
    receipt_url: HttpUrl


class InvoiceIssued(ResellerEvent):
    invoice_number: SafeStr
    period: Annotated[SafeStr, Field(pattern=r"^\d{4}-\d{2}$")] = Field(description="YYYY-MM")
    total: Money
    payment_mode: Literal["prepaid", "postpaid"]
    due_date: date | None = Field(default=None, description="Postpaid only: 14 days after issue.")
    invoice_url: HttpUrl


class InvoiceDueSoon(ResellerEvent):
    invoice_number: SafeStr
    total: Money
    due_date: date
    pay_url: HttpUrl


class InvoiceOverdue(ResellerEvent):
    invoice_number: SafeStr
    total: Money
    due_date: date
    days_overdue: PosInt
    late_interest_percent: Annotated[Decimal, pydantic.BeforeValidator(decimal_value)] = Field(
        description="Late-payment interest, percent a year."
    )
    compensation: Money = Money(amount=40)  # type: ignore[arg-type]
    suspension_date: date
    pay_url: HttpUrl


class DiscountTierChanged(ResellerEvent):
    previous_tier: SafeStr
    new_tier: SafeStr
    turnover: Money = Field(description="Turnover over the rolling month.")
    discount_percent: Annotated[float, Field(ge=0, le=100)]
    effective_at: AwareDatetime
    pricing_url: HttpUrl


class ClientAccessChanged(ResellerEvent):
    client_name: SafeStr
    change: Literal["granted", "limited", "revoked", "payment_method_changed"]
    changed_at: AwareDatetime
    clients_url: HttpUrl


class CommissionPaid(ResellerEvent):
    amount: Money
    period: Annotated[SafeStr, Field(pattern=r"^\d{4}-\d{2}$")]
    paid_at: AwareDatetime
    reference: SafeStr


class OrderPlaced(ResellerEvent):
    order_number: SafeStr
    client_name: SafeStr
    placed_at: AwareDatetime
    items: list[OrderItem] = Field(min_length=1)
    total: Money
    copy_for: Literal["reseller", "client"] = Field(
        default="reseller",
        description="`client`: the client's copy, sent in the reseller's brand without prices.",
    )
    orders_url: HttpUrl


class ActionRequired(ResellerEvent):
    action: Literal[
        "registrant_email_missing", "document_required", "payment_method_required", "other"
    ]
    description: SafeStr = Field(
        description="Free text shown as is: write it in the language the reseller reads mail in."
    )
    domain: DomainName | None = None
    due_date: date | None = None
    action_url: HttpUrl


@dataclass(frozen=True)
class EventSpec:
    name: str
    audience: Audience
    mandatory: bool
    model: type[EventData]
    summary: str
    brief: str
    sample: Mapping[str, Any]
    #: fields that, with brand and domain, identify the occasion of a notice (dedupe key)
    occasion: tuple[str, ...] = ()
    #: events that, once accepted, make this domain's pending reminders pointless
    cancels: tuple[str, ...] = ()
    #: brand to use; ``None`` = by audience. ``order_placed`` client copies use the reseller.
    audience_for: Callable[[EventData], Audience] | None = field(default=None, compare=False)

    def audience_of(self, data: EventData) -> Audience:
        return self.audience_for(data) if self.audience_for else self.audience

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema["title"] = self.name
        return schema

    def describe(self) -> dict[str, Any]:
        schema = self.json_schema()
        required = set(schema.get("required", []))
        fields = {
            name: {
                "type": _type_name(info.annotation),
                "required": name in required,
                "description": info.description or "",
            }
            for name, info in self.model.model_fields.items()
        }
        return {
            "name": self.name,
            "audience": self.audience,
            "mandatory": self.mandatory,
            "summary": self.summary,
            "fields": fields,
            "sample": dict(self.sample),
        }


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or repr(annotation)
    return (
        str(text)
        .replace("typing.", "")
        .replace("pydantic.types.", "")
        .replace("notifier.events.", "")
        .replace("notifier.fields.", "")
    )


# --- sample data -------------------------------------------------------------------

_NOW = "2026-11-26T09:30:00+02:00"
_EXP = "2026-12-26T23:59:59+02:00"
_URL = "https://manage.nordname.com/domains/48213"
_EUR = {"amount": "12.50", "currency": "EUR"}
_CONTACT = {
    "name": "Aino Virtanen",
    "organization": "Virtasen Puutarha Oy",
    "address": ["Kauppakatu 12 B 4", "40100 Jyväskylä", "Finland"],
    "email": "aino.virtanen@virtasenpuutarha.fi",
    "phone": "+358 40 123 4567",
}
_RESELLER = {"reseller_name": "Acme Digital Oy", "account_id": "R-10042"}


def _d(**kw: Any) -> dict[str, Any]:
    return {"domain": "äänekoskenpuutarha.fi", **kw}


_SPECS: list[EventSpec] = [
    EventSpec(
        "domain.registered",
        "registrant",
        True,
        DomainRegistered,
        "A new domain registration is complete.",
        "Confirm the registration with the expiry date; state the deletion and auto-renew policy "
        "(auto-renew on/off; an unrenewed name is deleted N days after expiry, .fi after the "
        "protection period) and where renewal, late-renewal and restore fees are published (fees_url).",
        _d(
            registered_at=_NOW,
            expires_at="2027-11-26T09:30:00+02:00",
            years=1,
            auto_renew=True,
            manage_url=_URL,
            fees_url="https://nordname.com/pricing",
        ),
        occasion=("registered_at",),
    ),
    EventSpec(
        "domain.renewal_reminder",
        "registrant",
        True,
        RenewalReminder,
        "ERRP renewal reminder about a month and about a week before expiry.",
        "Domain, expiry date and days left (plural forms), how to renew (renew_url) and the price; "
        "if auto_renew the renewal happens automatically and nothing is needed; what happens if "
        "not renewed (website and e-mail stop; .fi: protection period then released; .se: "
        "deactivated, then released). Mandatory: no unsubscribe.",
        _d(
            expires_at=_EXP,
            days_left=30,
            auto_renew=False,
            price=_EUR,
            years=1,
            renew_url="https://manage.nordname.com/renew/48213?source=mail",
        ),
        occasion=("expires_at", "days_left"),
    ),
    EventSpec(
        "domain.renewed",
        "registrant",
        False,
        DomainRenewed,
        "The domain was renewed.",
        "Domain renewed for N years, new expiry date, price if given.",
        _d(
            renewed_at=_NOW,
            expires_at="2027-12-26T23:59:59+02:00",
            years=1,
            price=_EUR,
            manage_url=_URL,
        ),
        occasion=("expires_at",),
        cancels=("domain.renewal_reminder", "domain.auto_renew_failed"),
    ),
    EventSpec(
        "domain.auto_renew_failed",
        "registrant",
        True,
        AutoRenewFailed,
        "Automatic renewal could not be charged.",
        "Automatic renewal failed (reason), the domain expires on expires_at unless renewed "
        "manually; renew link and price.",
        _d(expires_at=_EXP, reason="card_expired", price=_EUR, renew_url=_URL + "/renew"),
        occasion=("expires_at",),
    ),
    EventSpec(
        "domain.expired",
        "registrant",
        True,
        DomainExpired,
        "ERRP post-expiry notice (within 5 days after expiry).",
        "The domain has expired; DNS (website, e-mail) stops at dns_stops_at if not already; it can "
        "still be renewed until renewable_until (.fi: the protection period, suoja-aika; .se: "
        "deactivated), after which it is deleted and anyone may register it. How to renew, price.",
        _d(
            expired_at=_EXP,
            dns_stops_at="2026-12-31T23:59:59+02:00",
            renewable_until="2027-01-25T23:59:59+02:00",
            price=_EUR,
            renew_url=_URL + "/renew",
        ),
        occasion=("expired_at",),
    ),
    EventSpec(
        "domain.redemption",
        "registrant",
        True,
        DomainRedemption,
        "The domain entered redemption (gTLD) / last restore period before deletion.",
        "gTLD: redemption grace period, restore possible until redemption_ends_at for restore_price; "
        ".fi: protection period ending; .se: deactivated/quarantine. Restore link.",
        _d(
            redemption_ends_at="2027-02-24T23:59:59+02:00",
            restore_price={"amount": "89.00", "currency": "EUR"},
            restore_url=_URL + "/restore",
        ),
        occasion=("redemption_ends_at",),
    ),
    EventSpec(
        "domain.deleted",
        "registrant",
        False,
        DomainDeleted,
        "The domain was deleted and is no longer the registrant's.",
        "Deleted at deleted_at; when it is free for anyone (available_from); register link if given.",
        _d(
            deleted_at=_NOW,
            available_from="2026-12-03T12:00:00+02:00",
            register_url="https://nordname.com/search?q=xn--nekoskenpuutarha-unba.fi",
        ),
        occasion=("deleted_at",),
        cancels=("domain.renewal_reminder",),
    ),
    EventSpec(
        "domain.restored",
        "registrant",
        False,
        DomainRestored,
        "The domain was restored from redemption / protection period.",
        "Restored, works again (DNS may take hours), new expiry date, price if given.",
        _d(
            restored_at=_NOW,
            expires_at="2027-12-26T23:59:59+02:00",
            price={"amount": "89.00"},
            manage_url=_URL,
        ),
        occasion=("restored_at",),
    ),
    EventSpec(
        "contact.verification_required",
        "registrant",
        True,
        VerificationRequired,
        "Verify the registrant's e-mail address (WHOIS accuracy).",
        "Why (trigger), the address being verified, the link, the deadline (15 days): otherwise the "
        "domain(s) are suspended. Ignore-if-not-you line.",
        _d(
            email="aino.virtanen@virtasenpuutarha.fi",
            domains=["virtasenpuutarha.fi"],
            verify_url="https://manage.nordname.com/verify/4f9c2a",
            deadline="2026-12-11T09:30:00+02:00",
            trigger="registration",
        ),
        occasion=("email", "deadline"),
    ),
    EventSpec(
        "contact.verification_reminder",
        "registrant",
        True,
        VerificationReminder,
        "Reminder (day 7) to verify the e-mail address.",
        "Still unverified, days left, deadline, link, suspension consequence.",
        _d(
            email="aino.virtanen@virtasenpuutarha.fi",
            verify_url="https://manage.nordname.com/verify/4f9c2a",
            deadline="2026-12-11T09:30:00+02:00",
            days_left=8,
        ),
        occasion=("email", "deadline", "days_left"),
    ),
    EventSpec(
        "contact.verified",
        "registrant",
        False,
        ContactVerified,
        "The e-mail address was verified.",
        "Thanks; address verified; domains stay active / suspension lifted.",
        _d(email="aino.virtanen@virtasenpuutarha.fi", verified_at=_NOW),
        occasion=("email", "verified_at"),
    ),
    EventSpec(
        "domain.suspended_unverified",
        "registrant",
        True,
        SuspendedUnverified,
        "The domain was suspended (clientHold) because the address was not verified.",
        "Suspended: website and e-mail do not work; verify with the link to lift it at once.",
        _d(
            email="aino.virtanen@virtasenpuutarha.fi",
            suspended_at=_NOW,
            verify_url="https://manage.nordname.com/verify/4f9c2a",
        ),
        occasion=("suspended_at",),
    ),
    EventSpec(
        "transfer.auth_code",
        "registrant",
        True,
        AuthCode,
        "The transfer code the registrant asked for.",
        "The code, issued_at and validity. Wording by TLD: .fi = registrar-change key "
        "(välittäjän vaihtoavain / kod för registrarbyte), gTLD = auth code / EPP code, .se = "
        "auktoriseringskod. Only give it to the new registrar; if you did not ask for it, contact support.",
        _d(auth_code="Xk7#pQ2v-Lm9", issued_at=_NOW, valid_until="2026-12-10T09:30:00+02:00"),
        occasion=("issued_at",),
    ),
    EventSpec(
        "transfer.in_requested",
        "registrant",
        True,
        TransferInRequested,
        "Form of Authorization for an incoming transfer.",
        "A transfer of the domain to us (the reseller) was requested; approve with the link by "
        "approve_by; if you did not ask for it, do nothing and it will not go ahead.",
        _d(
            domain="virtasenpuutarha.com",
            requested_at=_NOW,
            approve_url="https://manage.nordname.com/foa/77ab",
            approve_by="2026-12-01T09:30:00+02:00",
            losing_registrar="Example Registrar Inc.",
        ),
        occasion=("requested_at",),
    ),
    EventSpec(
        "transfer.in_completed",
        "registrant",
        False,
        TransferInCompleted,
        "Incoming transfer completed.",
        "Welcome; the domain is now managed here; expiry date; manage link.",
        _d(
            domain="virtasenpuutarha.com",
            completed_at=_NOW,
            expires_at="2027-11-26T09:30:00+02:00",
            manage_url=_URL,
        ),
        occasion=("completed_at",),
    ),
    EventSpec(
        "transfer.in_failed",
        "registrant",
        False,
        TransferInFailed,
        "Incoming transfer failed.",
        "The transfer did not go through, why (reason), how to try again.",
        _d(
            domain="virtasenpuutarha.com",
            failed_at=_NOW,
            reason="auth_code_invalid",
            retry_url="https://manage.nordname.com/transfer",
        ),
        occasion=("failed_at",),
    ),
    EventSpec(
        "transfer.out_requested",
        "registrant",
        True,
        TransferOutRequested,
        "Another registrar asked to take the domain over.",
        "Who asked, when; approve or deny with the links; if nothing is done it is approved "
        "automatically at auto_approve_at (5 days); if you did not ask, deny now.",
        _d(
            domain="virtasenpuutarha.com",
            requested_at=_NOW,
            gaining_registrar="Example Registrar Inc.",
            auto_approve_at="2026-12-01T09:30:00+02:00",
            approve_url="https://manage.nordname.com/transfer-out/88cd/approve",
            deny_url="https://manage.nordname.com/transfer-out/88cd/deny",
        ),
        occasion=("requested_at",),
    ),
    EventSpec(
        "transfer.out_completed",
        "registrant",
        True,
        TransferOutCompleted,
        "The domain moved to another registrar.",
        "Completed at, to whom; no longer managed here; contact support if this is unexpected.",
        _d(
            domain="virtasenpuutarha.com",
            completed_at=_NOW,
            gaining_registrar="Example Registrar Inc.",
        ),
        occasion=("completed_at",),
        cancels=("domain.renewal_reminder",),
    ),
    EventSpec(
        "contact.registrant_change_requested",
        "registrant",
        True,
        RegistrantChangeRequested,
        "Consent for a change of registrant (sent to previous and new registrant).",
        "Change from previous_registrant to new_registrant; confirm with the secure link by "
        "confirm_by; transfer before the change if moving registrar; the 60-day transfer lock "
        "follows unless opted out (lock_opt_out_url, gTLD); if not you, do not confirm.",
        _d(
            role="previous",
            previous_registrant="Aino Virtanen",
            new_registrant="Virtasen Puutarha Oy",
            requested_at=_NOW,
            confirm_url="https://manage.nordname.com/change/99ef",
            confirm_by="2026-12-03T09:30:00+02:00",
            lock_opt_out_url="https://manage.nordname.com/change/99ef/opt-out",
        ),
        occasion=("role", "requested_at"),
    ),
    EventSpec(
        "contact.registrant_changed",
        "registrant",
        True,
        RegistrantChanged,
        "The change of registrant is done (to previous and new registrant).",
        "Done at changed_at; the 60-day transfer lock ends transfer_lock_until (or none if opted out).",
        _d(
            role="new",
            previous_registrant="Aino Virtanen",
            new_registrant="Virtasen Puutarha Oy",
            changed_at=_NOW,
            transfer_lock_until="2027-01-25T09:30:00+02:00",
        ),
        occasion=("role", "changed_at"),
    ),
    EventSpec(
        "whois.data_reminder",
        "registrant",
        True,
        WhoisDataReminder,
        "WDRP yearly reminder to check the registration data.",
        "Show the data on file (name, organisation, address, e-mail, phone) and all domains concerned; "
        "false data can lead to suspension or cancellation; how to correct it (update_url); "
        "no reply needed if it is right.",
        _d(
            contact=_CONTACT,
            domains=["virtasenpuutarha.fi", "virtasenpuutarha.com"],
            update_url="https://manage.nordname.com/contacts",
        ),
        occasion=("contact",),
    ),
    EventSpec(
        "domain.nameservers_changed",
        "registrant",
        False,
        NameserversChanged,
        "Name servers were changed.",
        "New name servers listed; changes take up to 24 h; contact support if unexpected.",
        _d(nameservers=["ns1.acme.fi", "ns2.acme.fi"], changed_at=_NOW, manage_url=_URL),
        occasion=("changed_at",),
    ),
    EventSpec(
        "domain.dnssec_changed",
        "registrant",
        False,
        DnssecChanged,
        "DNSSEC was switched on or off.",
        "Enabled or disabled; what it means; contact support if unexpected.",
        _d(enabled=True, changed_at=_NOW, manage_url=_URL),
        occasion=("changed_at",),
    ),
    EventSpec(
        "domain.contacts_updated",
        "registrant",
        False,
        ContactsUpdated,
        "Contact details of the domain were updated.",
        "Which contacts changed (registrant, admin, tech, billing); check them; contact support if unexpected.",
        _d(changed_at=_NOW, changed=["admin", "tech"], manage_url=_URL),
        occasion=("changed_at",),
    ),
    EventSpec(
        "privacy.enabled",
        "registrant",
        False,
        PrivacyEnabled,
        "WHOIS privacy was switched on.",
        "Personal data hidden from public WHOIS/RDAP; contact via a form or forwarding address.",
        _d(changed_at=_NOW, manage_url=_URL),
        occasion=("changed_at",),
    ),
    EventSpec(
        "privacy.disabled",
        "registrant",
        False,
        PrivacyDisabled,
        "WHOIS privacy was switched off.",
        "Registration data may now be public in WHOIS/RDAP; how to switch it back on.",
        _d(changed_at=_NOW, manage_url=_URL),
        occasion=("changed_at",),
    ),
    EventSpec(
        "forwarding.updated",
        "registrant",
        False,
        ForwardingUpdated,
        "URL forwarding was changed or removed.",
        "Forwarding now points to target_url (permanent/temporary), or was removed.",
        _d(
            changed_at=_NOW,
            target_url="https://www.virtasenpuutarha.fi/kauppa",
            permanent=True,
            manage_url=_URL,
        ),
        occasion=("changed_at",),
    ),
    EventSpec(
        "domain.lock_changed",
        "registrant",
        False,
        LockChanged,
        "The transfer lock was switched on or off.",
        "Locked (transfers refused) or unlocked (transfer possible); contact support if unexpected.",
        _d(locked=False, changed_at=_NOW, manage_url=_URL),
        occasion=("changed_at",),
    ),
    # reseller account mail (platform brand)
    EventSpec(
        "reseller.balance_low",
        "reseller",
        False,
        BalanceLow,
        "Prepaid balance fell below the reseller's threshold.",
        "Balance and threshold; renewals at risk (domain, expiry, price); how to add funds.",
        {
            **_RESELLER,
            "balance": {"amount": "42.10"},
            "threshold": {"amount": "100.00"},
            "renewals_at_risk": [
                {
                    "domain": "virtasenpuutarha.fi",
                    "expires_at": "2026-12-02T23:59:59+02:00",
                    "price": _EUR,
                },
                {
                    "domain": "kahvila-helmi.fi",
                    "expires_at": "2026-12-05T23:59:59+02:00",
                    "price": _EUR,
                },
                {
                    "domain": "lindqvist-bygg.se",
                    "expires_at": "2026-12-09T23:59:59+02:00",
                    "price": {"amount": "16.90"},
                },
            ],
            "topup_url": "https://manage.nordname.com/account/funds",
        },
        occasion=("balance", "threshold"),
    ),
    EventSpec(
        "reseller.funds_added",
        "reseller",
        False,
        FundsAdded,
        "Receipt for a prepayment.",
        "Amount, method, receipt number, new balance; prepayments are refundable and earn no interest.",
        {
            **_RESELLER,
            "amount": {"amount": "200.00"},
            "balance": {"amount": "242.10"},
            "method": "online_bank",
            "receipt_number": "KU-2026-11-0381",
            "added_at": _NOW,
            "receipt_url": "https://manage.nordname.com/account/receipts/KU-2026-11-0381",
        },
        occasion=("receipt_number",),
    ),
    EventSpec(
        "reseller.invoice_issued",
        "reseller",
        False,
        InvoiceIssued,
        "Monthly summary invoice.",
        "One summary invoice for the month; prepaid: already paid from funds; postpaid: due in 14 days (due_date).",
        {
            **_RESELLER,
            "invoice_number": "2026-11-10042",
            "period": "2026-10",
            "total": {"amount": "1284.60"},
            "payment_mode": "postpaid",
            "due_date": "2026-12-10",
            "invoice_url": "https://manage.nordname.com/account/invoices/2026-11-10042",
        },
        occasion=("invoice_number",),
    ),
    EventSpec(
        "reseller.invoice_due_soon",
        "reseller",
        False,
        InvoiceDueSoon,
        "Reminder that an invoice falls due soon.",
        "Invoice number, total, due date; how to pay; bank transfers are free.",
        {
            **_RESELLER,
            "invoice_number": "2026-11-10042",
            "total": {"amount": "1284.60"},
            "due_date": "2026-12-10",
            "pay_url": "https://manage.nordname.com/account/invoices/2026-11-10042/pay",
        },
        occasion=("invoice_number", "due_date"),
    ),
    EventSpec(
        "reseller.invoice_overdue",
        "reseller",
        False,
        InvoiceOverdue,
        "Payment reminder for an overdue invoice.",
        "Overdue by N days; late-payment interest and the 40 € standard compensation (Finnish B2B); "
        "the account is suspended on suspension_date unless paid; ignore if already paid.",
        {
            **_RESELLER,
            "invoice_number": "2026-10-10042",
            "total": {"amount": "1284.60"},
            "due_date": "2026-11-10",
            "days_overdue": 16,
            "late_interest_percent": "11.5",
            "suspension_date": "2026-12-10",
            "pay_url": "https://manage.nordname.com/account/invoices/2026-10-10042/pay",
        },
        occasion=("invoice_number", "days_overdue"),
    ),
    EventSpec(
        "reseller.discount_tier_changed",
        "reseller",
        False,
        DiscountTierChanged,
        "Discount tier changed (rolling-month turnover, recalculated daily).",
        "Previous and new tier, the turnover it is based on, discount percent, effective time.",
        {
            **_RESELLER,
            "previous_tier": "Silver",
            "new_tier": "Gold",
            "turnover": {"amount": "5230.00"},
            "discount_percent": 12.5,
            "effective_at": _NOW,
            "pricing_url": "https://nordname.com/reseller/pricing",
        },
        occasion=("new_tier", "effective_at"),
    ),
    EventSpec(
        "reseller.client_access_changed",
        "reseller",
        False,
        ClientAccessChanged,
        "A client granted, limited or revoked the reseller's access, or changed payment method.",
        "Which client, what changed, when; link to clients.",
        {
            **_RESELLER,
            "client_name": "Virtasen Puutarha Oy",
            "change": "limited",
            "changed_at": _NOW,
            "clients_url": "https://manage.nordname.com/clients",
        },
        occasion=("client_name", "changed_at"),
    ),
    EventSpec(
        "reseller.commission_paid",
        "reseller",
        False,
        CommissionPaid,
        "Referral commission paid.",
        "Amount, period, payment date and reference.",
        {
            **_RESELLER,
            "amount": {"amount": "86.40"},
            "period": "2026-10",
            "paid_at": _NOW,
            "reference": "PROV-2026-10-042",
        },
        occasion=("period",),
    ),
    EventSpec(
        "reseller.order_placed",
        "reseller",
        False,
        OrderPlaced,
        "Order placed for a client; the client's copy shows no prices.",
        "Order number, client, items (domain, operation, years; price and total only in the "
        "reseller's copy). copy_for=client: in the reseller's brand to the client, no prices.",
        {
            **_RESELLER,
            "order_number": "ORD-884213",
            "client_name": "Virtasen Puutarha Oy",
            "placed_at": _NOW,
            "items": [
                {
                    "domain": "virtasenpuutarha.fi",
                    "operation": "register",
                    "years": 1,
                    "price": _EUR,
                },
                {
                    "domain": "virtasenpuutarha.com",
                    "operation": "transfer",
                    "years": 1,
                    "price": {"amount": "10.90"},
                },
            ],
            "total": {"amount": "23.40"},
            "copy_for": "reseller",
            "orders_url": "https://manage.nordname.com/orders/ORD-884213",
        },
        occasion=("order_number", "copy_for"),
        audience_for=lambda d: (
            "registrant" if getattr(d, "copy_for", "") == "client" else "reseller"
        ),
    ),
    EventSpec(
        "reseller.action_required",
        "reseller",
        False,
        ActionRequired,
        "Something only the reseller can fix (e.g. a registrant has no e-mail).",
        "What is needed (action + description), for which domain, by when, link.",
        {
            **_RESELLER,
            "action": "registrant_email_missing",
            "description": "The registrant of kahvila-helmi.fi has no e-mail address on file.",
            "domain": "kahvila-helmi.fi",
            "due_date": "2026-12-10",
            "action_url": "https://manage.nordname.com/domains/kahvila-helmi.fi/contacts",
        },
        occasion=("action", "domain", "due_date"),
    ),
]

CATALOG: dict[str, EventSpec] = {spec.name: spec for spec in _SPECS}


def get(name: str) -> EventSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownEvent(name, sorted(CATALOG)) from None


def validate_data(name: str, data: Any, prefix: str = "data") -> EventData:
    """Validate ``data`` for event ``name``; errors name the field path (``data.expires_at``)."""
    spec = get(name)
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError(prefix, "must be an object")])
    try:
        return spec.model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc.errors(include_url=False), prefix) from exc


def sample(name: str) -> EventData:
    spec = get(name)
    return spec.model.model_validate(spec.sample)


def as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
