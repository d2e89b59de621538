"""The sender decision and the headers it makes (issue 9: the Reply-To of mail sent the
platform way was computed but never applied)."""

from __future__ import annotations

import email
import email.policy

from notifier.brands import BrandRegistry
from notifier.compose.pipeline import Pipeline
from notifier.compose.sender import decide
from notifier.config import Settings


def test_platform_way_without_reply_to_replies_reach_the_reseller(
    session_settings: Settings,
) -> None:
    brands = BrandRegistry(session_settings.brands_dir, session_settings.platform_brand)
    acme = brands.get("acme").model_copy(update={"reply_to": None, "dns_verified": False})
    brands = brands.with_brand(acme)
    sender = decide(acme, brands.platform, mandatory=True)
    assert sender.via_platform and sender.reply_to == acme.from_address
    composed = Pipeline(session_settings, brands).compose(
        Pipeline(session_settings, brands).sample("domain.renewal_reminder", "acme", "fi")
    )
    msg = email.message_from_bytes(composed.outgoing.data, policy=email.policy.default)
    assert msg["From"].addresses[0].domain == "nordname.com"
    assert msg["Reply-To"].addresses[0].addr_spec == acme.from_address
    assert composed.outgoing.mail_from == "bounces@bounces.nordname.com"


def test_own_domain_without_reply_to_has_none(session_settings: Settings) -> None:
    brands = BrandRegistry(session_settings.brands_dir, session_settings.platform_brand)
    acme = brands.get("acme").model_copy(update={"reply_to": None, "dns_verified": True})
    sender = decide(acme, brands.platform, mandatory=False)
    assert sender.policy == "own" and sender.reply_to is None
    assert sender.mail_from == "bounces@bounce.acme.fi"
    assert sender.message_id_domain == "acme.fi"
