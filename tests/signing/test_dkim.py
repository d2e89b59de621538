"""DKIM signing: dkimpy verifies our signatures, and any change to what we signed breaks them.

Verification uses dkimpy with ``dnsfunc=`` serving the records the key store says to
publish, for both rsa-sha256 and ed25519-sha256 (RFC 8463).
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from notifier.brands import Brand, BrandRegistry
from notifier.compose.sender import decide
from notifier.config import Settings
from notifier.errors import KeyStoreError, SigningError
from notifier.signing.dkim import (
    Signer,
    canonicalize_body_relaxed,
    canonicalize_header_relaxed,
    from_domain,
    header_list,
    normalise_newlines,
    select_fields,
    split_message,
)
from notifier.signing.keys import KeyStore

ALGOS = ("rsa-sha256", "ed25519-sha256")


def make_brand(**overrides: Any) -> Brand:
    data: dict[str, Any] = {
        "id": "acme",
        "name": "Acme Digital",
        "legal_name": "Acme Digital Oy",
        "address": ["Hämeenkatu 20 A", "33200 Tampere"],
        "from_address": "verkkotunnukset@acme.fi",
        "reply_to": "tuki@acme.fi",
        "sending_domain": "acme.fi",
        "link_domain": "domain.acme.fi",
        "logo_url": "https://domain.acme.fi/logo.png",
        "support": {"email": "tuki@acme.fi"},
        "dkim": [
            {"name": "acme2026a", "algorithm": "rsa", "active": True},
            {"name": "acme2026e", "algorithm": "ed25519", "active": True},
        ],
    }
    data.update(overrides)
    return Brand.model_validate(data)


class FakeDNS:
    """dkimpy ``dnsfunc``: answers TXT lookups from records we 'published'."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def publish(self, name: str, value: str) -> None:
        self.records[name.rstrip(".") + "."] = value

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        key = name.decode() if isinstance(name, bytes) else name
        value = self.records.get(key)
        return value.encode() if value is not None else None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def brand(store: KeyStore) -> Brand:
    b = make_brand()
    store.generate(b, "acme2026a", "rsa")
    store.generate(b, "acme2026e", "ed25519")
    return b


@pytest.fixture(scope="module")
def dns(store: KeyStore, brand: Brand) -> FakeDNS:
    fake = FakeDNS()
    for sel in brand.dkim:
        record = store.record(brand, sel.name)
        fake.publish(record.name, record.value)
    return fake


@pytest.fixture(scope="module")
def signer(store: KeyStore) -> Signer:
    return Signer(store)


def build_message(
    *,
    sender: str = "Acme Digital <verkkotunnukset@acme.fi>",
    reply_to: str | None = "Acme Digital <tuki@acme.fi>",
    unsubscribe: bool = True,
) -> bytes:
    """A multipart/alternative message as the pipeline makes them, CRLF."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = "Aino Virtanen <aino.virtanen@example.fi>"
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = "Verkkotunnuksesi virtasenpuutarha.fi vanhenee pian"
    msg["Date"] = format_datetime(datetime(2026, 11, 26, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="acme.fi")
    if unsubscribe:
        msg["List-Unsubscribe"] = "<https://domain.acme.fi/u/abc123>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content("Hei Aino,\n\nverkkotunnuksesi vanhenee 2.12.2026.\n\nTerveisin\nAcme\n")
    msg.add_alternative(
        "<html><body><p>Hei Aino,</p><p>verkkotunnuksesi vanhenee <b>2.12.2026</b>.</p>"
        "</body></html>",
        subtype="html",
    )
    return msg.as_bytes()


def signatures(message: bytes) -> list[dict[bytes, bytes]]:
    d = dkim.DKIM(message)
    return [dkim.util.parse_tag_value(v) for k, v in d.headers if k.lower() == b"dkim-signature"]


def verify_each(message: bytes, dns: FakeDNS) -> dict[str, bool]:
    """Verify every signature on the message; keyed by its a= value."""
    result = {}
    for idx, sig in enumerate(signatures(message)):
        try:
            ok = bool(dkim.DKIM(message).verify(idx=idx, dnsfunc=dns))
        except dkim.DKIMException:  # e.g. body hash mismatch; dkim.verify maps it to False
            ok = False
        result[sig[b"a"].decode()] = ok
    return result


def test_signed_message_verifies_with_dkimpy(signer: Signer, brand: Brand, dns: FakeDNS) -> None:
    signed = signer.sign(build_message(), brand)
    assert dkim.verify(signed, dnsfunc=dns)
    assert verify_each(signed, dns) == {"rsa-sha256": True, "ed25519-sha256": True}


def test_signature_tags(signer: Signer, brand: Brand) -> None:
    signed = signer.sign(build_message(), brand)
    rsa_sig, ed_sig = signatures(signed)
    for sig in (rsa_sig, ed_sig):
        assert sig[b"c"] == b"relaxed/relaxed"
        assert sig[b"d"] == b"acme.fi"
        assert b"l" not in sig
        names = re.split(rb"\s*:\s*", sig[b"h"])
        assert names == [
            b"from",
            b"from",
            b"to",
            b"to",
            b"subject",
            b"subject",
            b"date",
            b"date",
            b"message-id",
            b"message-id",
            b"reply-to",
            b"reply-to",
            b"mime-version",
            b"mime-version",
            b"content-type",
            b"content-type",
            b"list-unsubscribe",
            b"list-unsubscribe",
            b"list-unsubscribe-post",
            b"list-unsubscribe-post",
        ]
    assert (rsa_sig[b"a"], rsa_sig[b"s"]) == (b"rsa-sha256", b"acme2026a")
    assert (ed_sig[b"a"], ed_sig[b"s"]) == (b"ed25519-sha256", b"acme2026e")
    # header lines stay short enough for every MTA
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_absent_oversigned_headers_are_named_once() -> None:
    headers = [(b"From", b" a@acme.fi\r\n"), (b"Subject", b" x\r\n")]
    assert header_list(headers) == [
        b"from",
        b"from",
        b"to",
        b"subject",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
    ]


def _replace(name: str, new_value: str) -> Callable[[bytes], bytes]:
    def change(message: bytes) -> bytes:
        pattern = re.compile(
            rb"^(" + name.encode() + rb":)[^\r\n]*((?:\r\n[ \t][^\r\n]*)*)", re.M | re.I
        )
        out, n = pattern.subn(b"\\1 " + new_value.encode(), message, count=1)
        assert n == 1, f"no {name} header to change"
        return out

    return change


def _prepend(header: str) -> Callable[[bytes], bytes]:
    """Put a header above everything, as an attacker replaying the message would."""
    return lambda message: header.encode() + b"\r\n" + message


def _insert_after_signatures(header: str) -> Callable[[bytes], bytes]:
    """Add a header below our signatures (where a second copy is read first by some clients)."""

    def change(message: bytes) -> bytes:
        head, body = message.split(b"\r\n\r\n", 1)
        return head + b"\r\n" + header.encode() + b"\r\n\r\n" + body

    return change


def _body(message: bytes) -> bytes:
    head, body = message.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n" + body.replace(b"2.12.2026", b"2.12.2027", 1)


TAMPERING: dict[str, Callable[[bytes], bytes]] = {
    "body": _body,
    "body appended": lambda m: m + b"Click here: https://evil.example/\r\n",
    "From": _replace("From", "Acme Digital <verkkotunnukset@evil.example>"),
    "To": _replace("To", "someone@example.fi"),
    "Subject": _replace("Subject", "Maksa heti"),
    "Date": _replace("Date", "Mon, 1 Jan 2024 00:00:00 +0000"),
    "Message-ID": _replace("Message-ID", "<x@acme.fi>"),
    "Reply-To": _replace("Reply-To", "evil@evil.example"),
    "MIME-Version": _replace("MIME-Version", "1.1"),
    "Content-Type": _replace("Content-Type", "text/plain"),
    "List-Unsubscribe": _replace("List-Unsubscribe", "<https://evil.example/u>"),
    "List-Unsubscribe-Post": _replace("List-Unsubscribe-Post", "List-Unsubscribe=Evil"),
    "second From prepended": _prepend("From: Bank <security@bank.example>"),
    "second Subject prepended": _prepend("Subject: Maksa heti"),
    "second To prepended": _prepend("To: other@example.fi"),
    "second Date prepended": _prepend("Date: Mon, 1 Jan 2024 00:00:00 +0000"),
    "second Message-ID prepended": _prepend("Message-ID: <y@acme.fi>"),
    "second Reply-To prepended": _prepend("Reply-To: evil@evil.example"),
    "second List-Unsubscribe prepended": _prepend("List-Unsubscribe: <https://evil.example/u>"),
    "second From below": _insert_after_signatures("From: Bank <security@bank.example>"),
}


@pytest.mark.parametrize("change", list(TAMPERING), ids=list(TAMPERING))
def test_any_change_breaks_both_signatures(
    signer: Signer, brand: Brand, dns: FakeDNS, change: str
) -> None:
    signed = signer.sign(build_message(), brand)
    assert verify_each(signed, dns) == {"rsa-sha256": True, "ed25519-sha256": True}
    tampered = TAMPERING[change](signed)
    assert tampered != signed
    assert verify_each(tampered, dns) == {"rsa-sha256": False, "ed25519-sha256": False}
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_added_reply_to_breaks_signature(signer: Signer, brand: Brand, dns: FakeDNS) -> None:
    signed = signer.sign(build_message(reply_to=None), brand)
    assert verify_each(signed, dns) == {"rsa-sha256": True, "ed25519-sha256": True}
    tampered = _prepend("Reply-To: evil@evil.example")(signed)
    assert verify_each(tampered, dns) == {"rsa-sha256": False, "ed25519-sha256": False}


def test_stock_dkimpy_lets_a_second_subject_through(
    store: KeyStore, brand: Brand, dns: FakeDNS
) -> None:
    """Why we over-sign: dkimpy's defaults only protect From from additions."""
    message = build_message()
    pem = store.path(brand.id, "acme2026a").read_bytes()
    header = dkim.sign(
        message, b"acme2026a", b"acme.fi", pem, canonicalize=(b"relaxed", b"relaxed")
    )
    stock = header + message
    assert dkim.verify(stock, dnsfunc=dns)
    assert dkim.verify(_prepend("Subject: Maksa heti")(stock), dnsfunc=dns)


def test_relaxed_canonicalisation_tolerates_whitespace(
    signer: Signer, brand: Brand, dns: FakeDNS
) -> None:
    signed = signer.sign(build_message(), brand)
    refolded = signed.replace(b"Subject: ", b"subject:   ", 1) + b"\r\n\r\n"
    assert verify_each(refolded, dns) == {"rsa-sha256": True, "ed25519-sha256": True}


def test_newlines_are_normalised_before_signing(signer: Signer, brand: Brand, dns: FakeDNS) -> None:
    crlf = build_message()
    lf = crlf.replace(b"\r\n", b"\n").replace(b"Terveisin", b"Terveisin\rAcme", 1)
    signed = signer.sign(lf, brand)
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert b"\r" not in signed.replace(b"\r\n", b"")
    assert signed.endswith(normalise_newlines(lf))
    assert verify_each(signed, dns) == {"rsa-sha256": True, "ed25519-sha256": True}


_BODY_BITS = st.sampled_from([b" ", b"  ", b"\t", b"\r\n", b"a", b"=20", b"\r\n\r\n", b" \t "])


@given(st.lists(_BODY_BITS, max_size=40).map(b"".join))
def test_body_canonicalisation_equals_dkimpy(body: bytes) -> None:
    assert canonicalize_body_relaxed(body) == Relaxed.canonicalize_body(body)


_FIELD_BITS = st.sampled_from(
    [b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b"\r\r\n", b"\r\n ", b"a", b"=?", b"\x0b", b"\x0c"]
)


@given(
    st.sampled_from([b"Subject", b"SUBJECT ", b"From\t", b"x-Odd"]),
    st.lists(_FIELD_BITS, max_size=30).map(b"".join),
)
def test_field_canonicalisation_equals_dkimpy(name: bytes, value: bytes) -> None:
    assert [canonicalize_header_relaxed(name, value)] == Relaxed.canonicalize_headers(
        [(name, value)]
    )


@given(
    st.lists(st.sampled_from([b"from", b"to", b"subject", b"date", b"x-a"]), max_size=12),
    st.lists(st.sampled_from([b"from", b"to", b"subject", b"date", b"reply-to"]), max_size=12),
)
def test_field_selection_equals_dkimpy(names: list[bytes], include: list[bytes]) -> None:
    fields = [(n, b"value %d\r\n" % i) for i, n in enumerate(names)]
    assert select_fields(fields, include) == dkim.select_headers(fields, include)


def test_from_domain_is_remembered_but_checked_each_time() -> None:
    one = [[b"From", b" Acme <Verkkotunnukset@ACME.fi>\r\n"]]
    assert from_domain(one) == from_domain(one) == "acme.fi"
    with pytest.raises(SigningError, match="exactly one From"):
        from_domain(one + one)  # a second From is refused, remembered value or not
    with pytest.raises(SigningError, match="exactly one address"):
        from_domain([[b"From", b" a@acme.fi, b@acme.fi\r\n"]])


@pytest.mark.parametrize(
    "message",
    [
        b"From: a@acme.fi\r\nSubject: x\r\n\r\nbody\r\n",
        b"From: a@acme.fi\r\nSubject: folded\r\n  more\r\n\r\n\r\nbody\r\n\r\n",
        b"From: a@acme.fi\r\n",
        b"From: a@acme.fi\r\n\r\n",
        b"\r\nno headers\r\n",
        b"From: a@acme.fi",
    ],
)
def test_split_message_equals_dkimpy_parse(message: bytes) -> None:
    assert split_message(message) == dkim.rfc822_parse(message)


def test_normalise_newlines_is_idempotent() -> None:
    messy = b"a\nb\rc\r\nd\r\r\ne\n\r"
    once = normalise_newlines(messy)
    assert once == b"a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\n"
    assert normalise_newlines(once) is once


def test_rsa_only_brand_gets_one_signature(store: KeyStore, signer: Signer, dns: FakeDNS) -> None:
    b = make_brand(id="rsaonly", dkim=[{"name": "r1", "active": True}])
    record = store.generate(b, "r1")
    dns.publish(record.name, record.value)
    signed = signer.sign(build_message(), b)
    assert [s[b"a"] for s in signatures(signed)] == [b"rsa-sha256"]
    assert dkim.verify(signed, dnsfunc=dns)


def test_rotation_keeps_old_mail_verifying(store: KeyStore, signer: Signer) -> None:
    old = make_brand(id="rotor", dkim=[{"name": "old", "active": True}, {"name": "new"}])
    fake = FakeDNS()
    for sel in ("old", "new"):
        record = store.generate(old, sel)
        fake.publish(record.name, record.value)
    before = signer.sign(build_message(), old)
    rotated = make_brand(id="rotor", dkim=[{"name": "old"}, {"name": "new", "active": True}])
    after = signer.sign(build_message(), rotated)
    assert signatures(before)[0][b"s"] == b"old"
    assert signatures(after)[0][b"s"] == b"new"
    assert dkim.verify(before, dnsfunc=fake)
    assert dkim.verify(after, dnsfunc=fake)
    # once the old record is withdrawn, only mail signed before it stops verifying
    del fake.records["old._domainkey.acme.fi."]
    assert not dkim.verify(before, dnsfunc=fake)
    assert dkim.verify(after, dnsfunc=fake)


def test_wrong_published_key_fails(signer: Signer, brand: Brand, store: KeyStore) -> None:
    other = make_brand(id="other")
    record = store.generate(other, "acme2026a")
    fake = FakeDNS()
    fake.publish("acme2026a._domainkey.acme.fi", record.value)
    assert not dkim.verify(signer.sign(build_message(), brand), dnsfunc=fake)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (build_message(sender="Evil <x@evil.example>"), "does not align"),
        (_prepend("From: a@acme.fi")(build_message()), "exactly one From"),
        (build_message().replace(b"From:", b"X-From:", 1), "exactly one From"),
        (_replace("From", "a@acme.fi, b@acme.fi")(build_message()), "exactly one address"),
    ],
    ids=["misaligned", "two-from", "no-from", "two-addresses"],
)
def test_refuses_messages_that_would_fail_dmarc(
    signer: Signer, brand: Brand, message: bytes, error: str
) -> None:
    with pytest.raises(SigningError, match=error):
        signer.sign(message, brand)


def test_subdomain_from_aligns_with_organisational_d(
    store: KeyStore, signer: Signer, dns: FakeDNS
) -> None:
    b = make_brand(
        id="subdom", from_address="info@mail.acme.fi", dkim=[{"name": "sub1", "active": True}]
    )
    record = store.generate(b, "sub1")
    dns.publish(record.name, record.value)
    signed = signer.sign(build_message(sender="Acme <info@mail.acme.fi>"), b)
    assert signatures(signed)[0][b"d"] == b"acme.fi"
    assert dkim.verify(signed, dnsfunc=dns)


def test_a_neighbour_under_a_public_suffix_does_not_align(
    store: KeyStore, signer: Signer, dns: FakeDNS
) -> None:
    # org.se is a public suffix: evil.org.se and firma.org.se are different organisations
    evil = make_brand(
        id="firma",
        from_address="info@firma.org.se",
        sending_domain="bounce.evil.org.se",
        dkim=[{"name": "f1", "active": True}],
    )
    store.generate(evil, "f1")
    with pytest.raises(SigningError, match="does not align"):
        signer.sign(build_message(sender="Firma <info@firma.org.se>"), evil)
    own = make_brand(
        id="firma",
        from_address="info@firma.org.se",
        sending_domain="mail.firma.org.se",
        dkim=[{"name": "f1", "active": True}],
    )
    record = store.record(own, "f1")
    dns.publish(record.name, record.value)
    signed = signer.sign(build_message(sender="Firma <info@firma.org.se>"), own)
    assert signatures(signed)[0][b"d"] == b"mail.firma.org.se"
    assert dkim.verify(signed, dnsfunc=dns)


def test_missing_selector_or_key(signer: Signer) -> None:
    with pytest.raises(SigningError, match="no active RSA"):
        signer.sign(build_message(), make_brand(id="nokey", dkim=[]))
    with pytest.raises(KeyStoreError, match="notifier dkim keygen"):
        signer.sign(build_message(), make_brand(id="nokey"))


def test_key_algorithm_must_match_selector(store: KeyStore, signer: Signer) -> None:
    b = make_brand(id="mixed", dkim=[{"name": "m1", "algorithm": "ed25519"}])
    store.generate(b, "m1", algorithm="ed25519")
    lying = make_brand(id="mixed", dkim=[{"name": "m1", "algorithm": "rsa", "active": True}])
    with pytest.raises(SigningError, match="its key is ed25519"):
        signer.sign(build_message(), lying)


def test_fixed_clock_gives_reproducible_rsa_signature(store: KeyStore, brand: Brand) -> None:
    s = Signer(store, clock=lambda: 1_780_000_000)
    message = build_message()
    first, second = s.sign(message, brand), s.sign(message, brand)
    rsa_part = first.split(b"DKIM-Signature", 3)[1]
    assert rsa_part == second.split(b"DKIM-Signature", 3)[1]  # PKCS#1 v1.5 is deterministic
    assert b"t=1780000000" in first


# the unverified-DNS policy -------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> BrandRegistry:
    settings = Settings(var_dir=Path("var"))
    return BrandRegistry(settings.brands_dir, settings.platform_brand)


def _with(brand: Brand, **changes: Any) -> Brand:
    return brand.model_copy(update=changes)


def test_verified_brand_signs_as_itself(registry: BrandRegistry) -> None:
    acme = _with(registry.get("acme"), dns_verified=True)
    d = decide(acme, registry.platform, mandatory=False)
    assert d.policy == "own" and not d.held and not d.via_platform
    assert d.signer is acme
    assert d.from_address == "verkkotunnukset@acme.fi"
    assert d.from_address.endswith("@acme.fi")
    assert d.mail_from == "bounces@bounce.acme.fi"


def test_unverified_platform_policy_goes_via_platform(registry: BrandRegistry) -> None:
    acme = registry.get("acme")
    assert not acme.dns_verified and acme.unverified_policy == "platform"
    d = decide(acme, registry.platform, mandatory=False)
    assert d.policy == "platform" and d.via_platform
    assert d.signer is registry.platform
    assert d.from_address.endswith("@nordname.com")
    # the reseller's local part on the platform's domain, as the mail has always said
    assert d.from_address == "verkkotunnukset@nordname.com"
    assert d.display_name == "Acme Digital"
    assert d.reply_to == "tuki@acme.fi"
    assert d.mail_from == "bounces@bounces.nordname.com"
    assert d.message_id_domain == "nordname.com"


def test_unverified_hold_policy_holds_unless_mandatory(registry: BrandRegistry) -> None:
    kw = registry.get("kustwebb")
    assert not kw.dns_verified and kw.unverified_policy == "hold"
    held = decide(kw, registry.platform, mandatory=False)
    assert held.held and held.signer is kw and held.from_address.endswith("@kustwebb.fi")
    urgent = decide(kw, registry.platform, mandatory=True)
    assert urgent.policy == "platform" and urgent.signer is registry.platform
    assert urgent.display_name == "Kustwebb"
    assert urgent.reply_to == "kundtjanst@kustwebb.fi"


def test_platform_brand_signs_as_itself(registry: BrandRegistry) -> None:
    d = decide(registry.platform, registry.platform, mandatory=False)
    assert d.signer is registry.platform and not d.via_platform


def test_via_platform_message_verifies_with_platform_key(
    registry: BrandRegistry, store: KeyStore, signer: Signer
) -> None:
    platform = registry.platform
    decision = decide(registry.get("acme"), platform, mandatory=False)
    assert decision.signer is platform and decision.from_address
    sel = platform.active_selector()
    assert sel is not None
    record = store.generate(platform, sel.name)
    fake = FakeDNS()
    fake.publish(record.name, record.value)
    message = build_message(
        sender=f"{decision.display_name} <{decision.from_address}>", reply_to=decision.reply_to
    )
    signed = signer.sign(message, decision.signer)
    assert signatures(signed)[0][b"d"] == b"nordname.com"
    assert dkim.verify(signed, dnsfunc=fake)
    # the reseller's own From cannot be signed with the platform key
    with pytest.raises(SigningError, match="does not align"):
        signer.sign(build_message(), decision.signer)
