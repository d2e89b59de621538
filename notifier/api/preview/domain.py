"""Domain setup: the DNS records a brand must publish, their status and "check now".

The records are derived from what the checks expect (``notifier dns check``): the
brand file (domains, DKIM selectors), the key store (each selector's public key) and
the settings (the platform's SPF include and link target). The status shown comes
from :func:`dns_status`, the one place the page asks for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import Response

from ...brands import Brand
from ...config import Settings
from ...dns import checks as dnscheck
from ...dns.alignment import organisational_domain
from ...errors import DNSCheckError, KeyStoreError
from ...signing.keys import KeyStore
from ..store import OutboxStore
from ..ui_text import Texts, texts
from ..web import CSP, form, page, ui_language
from .sent import local_time
from .state import _brand, _check_csrf, _redirect, _signed_in, _state, router

#: this page alone may run a script: the copy buttons' file from this origin
PAGE_CSP = CSP.replace("script-src 'none'", "script-src 'self'")
DMARC_START = "v=DMARC1; p=none; adkim=r; aspf=r"


@dataclass(frozen=True)
class Record:
    """One record to publish. ``check`` is the id of the DNS check that verifies it."""

    check: str
    title: str
    type: str
    name: str
    value: str | None  # None: cannot be known yet (the key is not made)
    help: str
    note: str = ""


@dataclass(frozen=True)
class DnsStatus:
    checked_at: datetime
    checks: tuple[dnscheck.Check, ...]

    def of(self, check_id: str) -> dnscheck.Check | None:
        return next((c for c in self.checks if c.id == check_id), None)


def records(brand: Brand, settings: Settings, keystore: KeyStore, t: Texts) -> list[Record]:
    """What the brand must publish, in the order a reseller would add them."""
    out = []
    for sel in brand.dkim:
        name = f"{sel.name}._domainkey.{brand.mail_domain}"
        note = "" if sel.active else t["not_in_use"]
        try:
            value: str | None = keystore.load(brand.id, sel.name).public_value
            help_text = t["why_dkim"]
        except KeyStoreError:
            value, help_text = None, t["key_missing"]
        title = t["record_dkim"].format(selector=sel.name)
        out.append(Record(f"dkim:{sel.name}", title, "TXT", name, value, help_text, note))
    include = settings.spf_include
    out.append(
        Record(
            "spf",
            t["record_spf"],
            "TXT",
            brand.envelope_domain,
            f"v=spf1 {include} -all",
            t["why_spf"].format(domain=brand.envelope_domain, include=include),
        )
    )
    from_domain = brand.from_address.rpartition("@")[2].lower()
    dmarc_name = f"_dmarc.{organisational_domain(from_domain)}"
    out.append(Record("dmarc", t["record_dmarc"], "TXT", dmarc_name, DMARC_START, t["why_dmarc"]))
    out.append(
        Record(
            "link",
            t["record_link"],
            "CNAME",
            brand.link_host,
            settings.link_target.rstrip("."),
            t["why_link"],
        )
    )
    return out


def dns_status(request: Request, brand: Brand) -> DnsStatus | None:
    """The brand's newest recorded DNS check, as the workers, ``notifier dns check
    --apply``, the admin API and "check now" store it (``Outbox.brand_dns``); None
    before the first one or when the store is unavailable."""
    store = request.app.state.store
    if not isinstance(store, OutboxStore):
        return None
    stored = store.outbox.brand_dns(brand.id)
    if stored is None or stored.checked_at is None:
        return None
    checks = tuple(dnscheck.Check(**r) for r in stored.records)
    return DnsStatus(stored.checked_at, checks)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _page(
    request: Request,
    brand: Brand,
    *,
    flash: str | None = None,
    status: int = 200,
) -> Response:
    found = _signed_in(request)
    t = texts(ui_language(request))
    settings = _settings(request)
    result = dns_status(request, brand)
    recs = records(brand, settings, KeyStore(settings.keys_path), t)
    shown = {r.check for r in recs}
    rows = [(r, result.of(r.check) if result else None) for r in recs]
    return page(
        request,
        "domain.html",
        status=status,
        headers={"Content-Security-Policy": PAGE_CSP},
        session=found,
        capture=_state(request).capture,
        brand=brand,
        rows=rows,
        others=[c for c in result.checks if c.id not in shown] if result else [],
        checked_at=local_time(result.checked_at, brand.tz) if result else None,
        all_ok=dnscheck.all_ok(result.checks) if result else False,
        flash=flash,
    )


@router.get("/brands/{brand_id}/domain")
async def domain_page(request: Request, brand_id: str) -> Response:
    found = _signed_in(request)
    return _page(request, _brand(request, found, brand_id))


@router.post("/brands/{brand_id}/domain/check")
async def domain_check(request: Request, brand_id: str) -> Response:
    """Run the brand's DNS checks now; the page then shows their outcome."""
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    await _check_csrf(request, found, await form(request))
    t = texts(ui_language(request))
    wait = _state(request).check_limiter.hit(brand.id)
    if wait:
        flash = t["check_limited"].format(minutes=math.ceil(wait / 60))
        return _page(request, brand, flash=flash, status=429)
    try:
        # the same call as the admin API: recorded, so a verified brand signs as
        # itself from the next message and its held mail is released
        await request.app.state.store.check_dns(brand)
    except DNSCheckError as exc:
        return _page(request, brand, flash=t["check_failed"].format(error=exc), status=503)
    return _redirect(f"/preview/brands/{brand.id}/domain#dns-status")


@router.get("/static/copy.js")
async def copy_script(request: Request) -> Response:
    return Response(
        _state(request).js,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
