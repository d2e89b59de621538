"""Is a brand's DNS ready for mail sent in its name? One check per record, with dnspython.

Each :class:`Check` is ``ok``, ``fail`` (with what was found and the exact record to
publish) or ``unknown``: a timeout, SERVFAIL or refusal says nothing about the record,
so it is never reported as ok or fail. After one timeout the remaining lookups are
skipped (reported unknown) so a dead nameserver costs one timeout, not one per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import dns.exception
import dns.rdatatype
import dns.resolver

from ..brands import Brand
from ..config import Settings
from ..errors import DNSCheckError, KeyStoreError
from ..signing.keys import KeyStore
from .alignment import aligned, organisational_domain
from .resolver import NameserverError, NoSystemResolver, sync_resolver

Status = Literal["ok", "fail", "unknown"]


@dataclass(frozen=True)
class Check:
    """One verdict. ``expected`` is what to publish (zone-file form) when it is not ok."""

    id: str
    title: str
    status: Status
    name: str
    found: str | None = None
    expected: str | None = None
    message: str = ""
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Answer:
    """Outcome of one lookup: texts/targets on success, or why there are none."""

    kind: Literal["answer", "nxdomain", "nodata", "unknown"]
    values: tuple[str, ...] = ()
    error: str = ""


class _Lookup:
    """A resolver with no cache that turns dnspython outcomes into :class:`_Answer`."""

    def __init__(self, nameserver: str | None, timeout: float) -> None:
        # Several tries per lookup within the total budget, so one lost packet is not
        # taken for a dead server.
        try:
            self.resolver = sync_resolver(
                nameserver or None, lifetime=timeout, timeout=max(timeout / 3, 0.2)
            )
        except NameserverError as exc:
            raise DNSCheckError(str(exc)) from exc
        except NoSystemResolver as exc:
            raise DNSCheckError(f"no usable DNS resolver configuration: {exc}") from exc
        self.lifetime = timeout
        self.dead: str | None = None

    def query(self, name: str, rdtype: str) -> _Answer:
        if self.dead:
            return _Answer("unknown", error=f"skipped: {self.dead}")
        try:
            answer = self.resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return _Answer("nxdomain")
        except dns.exception.Timeout:
            self.dead = "the nameserver did not answer an earlier query"
            return _Answer("unknown", error=f"timeout: no answer within {self.lifetime:g} s")
        except dns.resolver.NoNameservers as exc:
            return _Answer("unknown", error=f"SERVFAIL or refused: {_short(exc)}")
        except dns.exception.DNSException as exc:
            return _Answer("unknown", error=f"{type(exc).__name__}: {_short(exc)}")
        wanted = dns.rdatatype.from_text(rdtype)
        values: list[str] = []
        if answer.rrset is not None:
            for rdata in answer.rrset:
                if rdata.rdtype != wanted:
                    continue
                if wanted == dns.rdatatype.TXT:
                    strings: Iterable[bytes] = rdata.strings
                    values.append(b"".join(strings).decode("utf-8", "replace"))
                elif wanted == dns.rdatatype.CNAME:
                    values.append(rdata.target.to_text().rstrip(".").lower())
                else:
                    values.append(rdata.to_text())
        return _Answer("answer", tuple(values)) if values else _Answer("nodata")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."


def _tags(record: str) -> dict[str, str]:
    """DKIM/DMARC ``tag=value;`` lists, leniently (whitespace and case of tag names)."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def _unknown(cid: str, title: str, name: str, answer: _Answer, required: bool = True) -> Check:
    return Check(
        cid,
        title,
        "unknown",
        name,
        message=f"DNS could not tell: {answer.error}",
        required=required,
    )


def _zone_txt(name: str, value: str) -> str:
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return f"{name}. IN TXT " + " ".join(f'"{p}"' for p in parts)


# the checks --------------------------------------------------------------------------


def _check_dkim(brand: Brand, keystore: KeyStore, q: _Lookup) -> list[Check]:
    if not brand.dkim:
        return [
            Check(
                "dkim",
                "DKIM selector",
                "fail",
                f"_domainkey.{brand.mail_domain}",
                message="the brand lists no DKIM selector",
                expected=f"notifier dkim keygen --brand {brand.id} --selector NAME",
            )
        ]
    checks = []
    for sel in brand.dkim:
        cid, title = f"dkim:{sel.name}", f"DKIM {sel.name} ({sel.algorithm})"
        name = f"{sel.name}._domainkey.{brand.mail_domain}"
        required = sel.active
        try:
            key = keystore.load(brand.id, sel.name)
        except KeyStoreError as exc:
            checks.append(
                Check(
                    cid,
                    title,
                    "fail",
                    name,
                    message=str(exc),
                    required=required,
                    expected=f"notifier dkim keygen --brand {brand.id} "
                    f"--selector {sel.name} --algorithm {sel.algorithm}",
                )
            )
            continue
        record = key.dns_record(brand.mail_domain)
        expected = record.zone_line()
        ans = q.query(name, "TXT")
        if ans.kind == "unknown":
            checks.append(_unknown(cid, title, name, ans, required))
            continue
        dkim_records = [v for v in ans.values if "p=" in v.replace(" ", "") or "DKIM1" in v]
        state = "inactive selector; " if not sel.active else ""
        if not dkim_records:
            what = "no such name" if ans.kind == "nxdomain" else "no DKIM TXT record"
            checks.append(
                Check(
                    cid,
                    title,
                    "fail",
                    name,
                    found=None,
                    expected=expected,
                    message=f"{state}{what}",
                    required=required,
                )
            )
            continue
        found = " | ".join(dkim_records)
        if len(dkim_records) > 1:
            checks.append(
                Check(
                    cid,
                    title,
                    "fail",
                    name,
                    found=found,
                    expected=expected,
                    message=f"{state}{len(dkim_records)} DKIM records; publish one",
                    required=required,
                )
            )
            continue
        tags = _tags(dkim_records[0])
        k = tags.get("k", "rsa").lower()
        if tags.get("p", "") == "":
            msg = "key revoked (empty p=)"
        elif k != key.algorithm:
            msg = f"record is k={k}, key store holds {key.algorithm}"
        elif not key.matches(tags["p"]):
            msg = "published key does not match the key store"
        else:
            note = "" if sel.active else " (selector not active yet)"
            checks.append(
                Check(
                    cid,
                    title,
                    "ok",
                    name,
                    found=found,
                    required=required,
                    message=f"key matches the key store{note}",
                )
            )
            continue
        checks.append(
            Check(
                cid,
                title,
                "fail",
                name,
                found=found,
                expected=expected,
                message=f"{state}{msg}",
                required=required,
            )
        )
    return checks


def _spf_terms(record: str) -> list[str]:
    return record.split()[1:]


def _is_spf(text: str) -> bool:
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


def _check_spf(brand: Brand, settings: Settings, q: _Lookup) -> Check:
    name = brand.envelope_domain
    include = settings.spf_include
    title = "SPF (envelope domain)"
    default = f"v=spf1 {include} -all"
    ans = q.query(name, "TXT")
    if ans.kind == "unknown":
        return _unknown("spf", title, name, ans)
    spf = [v for v in ans.values if _is_spf(v.strip())]
    if not spf:
        return Check(
            "spf", title, "fail", name, expected=_zone_txt(name, default), message="no SPF record"
        )
    found = " | ".join(spf)
    if len(spf) > 1:
        merged = _merge_spf(spf, include)
        return Check(
            "spf",
            title,
            "fail",
            name,
            found=found,
            expected=_zone_txt(name, merged),
            message=f"{len(spf)} SPF records (RFC 7208 §4.5: permerror); merge them",
        )
    terms = [t.lower().lstrip("+") for t in _spf_terms(spf[0])]
    if include.lower() not in terms:
        fixed = _merge_spf(spf, include)
        return Check(
            "spf",
            title,
            "fail",
            name,
            found=found,
            expected=_zone_txt(name, fixed),
            message=f"SPF does not include {include}",
        )
    return Check("spf", title, "ok", name, found=found, message=f"includes {include}")


def _merge_spf(records: list[str], include: str) -> str:
    """One SPF record: ours first, then every other mechanism of ``records``, then ``all``.

    Deterministic whatever order DNS returned the records in; when the records
    disagree on the final ``all``, the merged one softfails (``~all``) rather than
    guess which sender may be rejected.
    """
    terms: list[str] = [include]
    finals: set[str] = set()
    for record in sorted(records):
        for term in _spf_terms(record):
            bare = term.lower().lstrip("+-~?")
            if bare == "all" or bare.startswith("redirect="):
                finals.add(term.lower())
            elif term.lower().lstrip("+") not in (t.lower().lstrip("+") for t in terms):
                terms.append(term)
    final = finals.pop() if len(finals) == 1 else "~all"
    return " ".join(["v=spf1", *terms, final])


def _check_dmarc(brand: Brand, q: _Lookup) -> tuple[Check, dict[str, str]]:
    """RFC 7489 §6.6.3: the From domain's record, else the organisational domain's."""
    from_domain = brand.from_address.rpartition("@")[2]
    org = organisational_domain(from_domain)
    title = "DMARC"
    candidates = [from_domain] if aligned(from_domain, org, strict=True) else [from_domain, org]
    name = f"_dmarc.{org}"
    for domain in candidates:
        name = f"_dmarc.{domain}"
        ans = q.query(name, "TXT")
        if ans.kind == "unknown":
            return _unknown("dmarc", title, name, ans), {}
        records = [v for v in ans.values if v.strip().upper().startswith("V=DMARC1")]
        if len(records) > 1:
            return Check(
                "dmarc",
                title,
                "fail",
                name,
                found=" | ".join(records),
                expected=_zone_txt(name, records[0]),
                message=f"{len(records)} DMARC records: receivers apply none",
            ), {}
        if records:
            tags = _tags(records[0])
            policy = tags.get("p", "")
            if domain != from_domain:
                policy = tags.get("sp", policy)
            if policy.lower() not in ("none", "quarantine", "reject"):
                return Check(
                    "dmarc",
                    title,
                    "fail",
                    name,
                    found=records[0],
                    expected=_zone_txt(name, "v=DMARC1; p=none; adkim=r; aspf=r"),
                    message=f"invalid policy p={policy or '(missing)'}",
                ), tags
            note = " (monitoring only)" if policy.lower() == "none" else ""
            return Check(
                "dmarc",
                title,
                "ok",
                name,
                found=records[0],
                message=f"policy {policy.lower()}{note} for {from_domain}",
            ), tags
    name = f"_dmarc.{org}"
    return Check(
        "dmarc",
        title,
        "fail",
        name,
        expected=_zone_txt(name, "v=DMARC1; p=none; adkim=r; aspf=r"),
        message=f"no DMARC record for {org}",
    ), {}


def _check_alignment(brand: Brand, dmarc: dict[str, str]) -> list[Check]:
    from_domain = brand.from_address.rpartition("@")[2]
    checks = []
    for cid, title, domain, mode_tag, field in (
        ("align:dkim", "DKIM d= alignment", brand.mail_domain, "adkim", "sending_domain"),
        ("align:spf", "SPF domain alignment", brand.envelope_domain, "aspf", "bounce_domain"),
    ):
        strict = dmarc.get(mode_tag, "r").lower() == "s"
        mode = "strict" if strict else "relaxed"
        if aligned(domain, from_domain, strict=strict):
            checks.append(
                Check(
                    cid,
                    title,
                    "ok",
                    domain,
                    message=f"{domain} aligns with From {from_domain} ({mode})",
                )
            )
        else:
            want = from_domain if strict else f"{organisational_domain(from_domain)} or below"
            checks.append(
                Check(
                    cid,
                    title,
                    "fail",
                    domain,
                    found=domain,
                    expected=f"{field} in brands/{brand.id}.toml: {want}",
                    message=f"{domain} does not align with From {from_domain} ({mode})",
                )
            )
    return checks


def _check_link(brand: Brand, settings: Settings, q: _Lookup) -> Check:
    name = brand.link_host
    title = "link domain"
    target = settings.link_target.rstrip(".").lower()
    expected = f"{name}. IN CNAME {target}."
    ans = q.query(name, "CNAME")
    if ans.kind == "unknown":
        return _unknown("link", title, name, ans)
    if ans.kind == "answer":
        if ans.values[0] == target:
            return Check(
                "link",
                title,
                "ok",
                name,
                found=f"CNAME {ans.values[0]}",
                message=f"CNAME to {target}",
            )
        return Check(
            "link",
            title,
            "fail",
            name,
            found=f"CNAME {ans.values[0]}",
            expected=expected,
            message="CNAME points elsewhere",
        )
    if ans.kind == "nxdomain":
        return Check("link", title, "fail", name, expected=expected, message="no such name")
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        res = q.query(name, rdtype)
        if res.kind == "unknown":
            return _unknown("link", title, name, res)
        addresses.extend(res.values)
    allowed = {a.lower() for a in settings.link_addresses}
    found = ", ".join(addresses) or None
    if addresses and allowed and all(a.lower() in allowed for a in addresses):
        return Check("link", title, "ok", name, found=found, message="addresses are the platform's")
    if allowed:
        expected += " (or A/AAAA: " + ", ".join(sorted(allowed)) + ")"
    msg = "points to other addresses" if addresses else "no CNAME, A or AAAA record"
    return Check("link", title, "fail", name, found=found, expected=expected, message=msg)


def check_brand(
    brand: Brand,
    settings: Settings,
    keystore: KeyStore,
    nameserver: str | None = None,
    timeout: float = 5.0,
) -> list[Check]:
    """Every DNS check for ``brand``, in a stable order. ``nameserver`` is ``HOST[:PORT]``."""
    if timeout <= 0:
        raise DNSCheckError("timeout must be positive")
    q = _Lookup(nameserver, timeout)
    checks = _check_dkim(brand, keystore, q)
    checks.append(_check_spf(brand, settings, q))
    dmarc_check, dmarc_tags = _check_dmarc(brand, q)
    checks.append(dmarc_check)
    checks.extend(_check_alignment(brand, dmarc_tags))
    checks.append(_check_link(brand, settings, q))
    return checks


def all_ok(checks: Iterable[Check]) -> bool:
    """True when every required check is ok; what ``dns check`` exits 0 on."""
    return all(c.status == "ok" for c in checks if c.required)


def render_json(checks: list[Check], brand_id: str | None = None) -> str:
    doc: dict[str, Any] = {"ok": all_ok(checks), "checks": [c.as_dict() for c in checks]}
    if brand_id is not None:
        doc = {"brand": brand_id, **doc}
    return json.dumps(doc, indent=2, ensure_ascii=False)


_MARK = {"ok": "ok", "fail": "FAIL", "unknown": "UNKNOWN"}


def render_table(checks: list[Check], brand_id: str | None = None) -> str:
    """A plain-text table for ops, then what to publish for each check not ok."""
    rows = [("STATUS", "CHECK", "NAME", "DETAIL")]
    for c in checks:
        title = c.title if c.required else f"{c.title} (optional)"
        rows.append((_MARK[c.status], title, c.name, c.message))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    if brand_id is not None:
        lines.append(f"DNS check for brand {brand_id}")
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    for c in checks:
        if c.status != "fail":
            continue
        lines.append("")
        lines.append(f"{c.title}: {c.message}")
        if c.found:
            lines.append(f"  found:    {c.found}")
        if c.expected:
            lines.append(f"  expected: {c.expected}")
    lines.append("")
    if all_ok(checks):
        lines.append("All required checks ok.")
    elif any(c.status == "fail" for c in checks if c.required):
        lines.append("Some required checks failed.")
    else:
        lines.append("Some checks could not be made (DNS did not answer); try again.")
    return "\n".join(lines)
