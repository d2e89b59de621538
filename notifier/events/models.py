"""The types of the event catalog: one pydantic model per event's ``data``, and the spec
that binds an event name to its model.

Kept apart from the catalog's data (:mod:`.catalog`) so the shape of every event reads in
one place. Every model is frozen and refuses unknown fields, so a producer's typo is an
error rather than a silently dropped value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
        description=(
            "gTLDs: days after expiry until an unrenewed name is deleted "
            "(.fi and .se/.nu follow their registry rules)."
        ),
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
    """One catalog entry: who the mail is for, whether the law requires it, its data model,
    and what the notice must say (``brief``, for template authors)."""

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
        """The JSON Schema of the event's ``data`` object, titled with the event name."""
        schema = self.model.model_json_schema()
        schema["title"] = self.name
        return schema

    def describe(self) -> dict[str, Any]:
        """The event as the catalog document shows it (the API and ``notifier events --json``)."""
        return {
            "name": self.name,
            "audience": self.audience,
            "mandatory": self.mandatory,
            "summary": self.summary,
            "brief": self.brief,
            "schema": self.json_schema(),
            "sample": dict(self.sample),
        }
