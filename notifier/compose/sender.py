"""The sender decision: who a message is from, who signs it, where it bounces.

Decided once per message, before anything is rendered, and applied by every door
(API intake, ``notifier render``, ``send-test``, the preview), so that what a user
sees is what is sent.

A brand whose DNS is verified (and the platform itself) sends as itself. A reseller
whose DNS is not verified yet would fail DMARC with its own From domain, so, under
``unverified_policy = "platform"`` — and always for mandatory notices, which never
wait — its mail goes out from the platform's sending domain, signed with the
platform's key, under the reseller's display name, with Reply-To set to the
reseller's own address so that replies still reach the reseller. Under ``"hold"``
optional mail is composed as the brand's own and held until its DNS is verified
(Postal's ``dkim_header.rb`` falls back to the platform key in the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..brands import Brand

Policy = Literal["own", "platform", "hold"]


@dataclass(frozen=True, slots=True)
class Sender:
    """Everything about a message's origin, decided by :func:`decide`."""

    #: the brand the mail is written in (its look, links, time zone, language)
    brand: Brand
    #: whose DKIM key signs (``d=signer.mail_domain``)
    signer: Brand
    policy: Policy
    #: why, in words ops read (``notifier render`` prints it)
    reason: str
    #: the header From address and display name
    from_address: str
    display_name: str
    reply_to: str | None
    #: the envelope sender (Return-Path), on the signer's bounce domain so SPF aligns
    mail_from: str
    #: the Message-ID's right-hand side: the signer's domain
    message_id_domain: str

    @property
    def held(self) -> bool:
        """Kept until the brand's DNS is verified (policy ``hold``, optional mail)."""
        return self.policy == "hold"

    @property
    def via_platform(self) -> bool:
        """Sent from the platform's domain on the reseller's behalf."""
        return self.policy == "platform"

    def describe(self) -> str:
        """One line for people: ``brand DNS not verified: sent from …``."""
        return self.reason


def decide(
    brand: Brand, platform: Brand, *, mandatory: bool, verified: bool | None = None
) -> Sender:
    """The sender of a message written in ``brand``'s name (see the module docstring).
    ``verified`` is what the stored DNS checks observed (None: never checked, the brand
    file's ``dns_verified`` decides)."""
    own = brand.dns_verified if verified is None else verified
    if own or brand.platform or brand.id == platform.id:
        why = "brand DNS verified" if own else "platform brand"
        return _own(brand, "own", f"{why}: sent from {brand.mail_domain}, signed by it")
    if brand.unverified_policy == "platform" or mandatory:
        why = "mandatory notice" if brand.unverified_policy == "hold" else "policy platform"
        local = brand.from_address.rpartition("@")[0]
        return Sender(
            brand=brand,
            signer=platform,
            policy="platform",
            reason=(
                f"brand DNS not verified: sent from the platform domain "
                f"{platform.mail_domain} on its behalf ({why}); replies go to "
                f"{brand.reply_to or brand.from_address}"
            ),
            from_address=f"{local}@{platform.mail_domain}",
            display_name=brand.display_name,
            reply_to=brand.reply_to or brand.from_address,
            mail_from=f"bounces@{platform.envelope_domain}",
            message_id_domain=platform.mail_domain,
        )
    return _own(
        brand,
        "hold",
        "brand DNS not verified and unverified_policy is hold: "
        "held until the brand's DNS is verified",
    )


def _own(brand: Brand, policy: Policy, reason: str) -> Sender:
    return Sender(
        brand=brand,
        signer=brand,
        policy=policy,
        reason=reason,
        from_address=brand.from_address,
        display_name=brand.display_name,
        reply_to=brand.reply_to,
        mail_from=f"bounces@{brand.envelope_domain}",
        message_id_domain=brand.mail_domain,
    )


__all__ = ["Policy", "Sender", "decide"]
