"""DMARC alignment by the Public Suffix List, not by "the last two labels"."""

from __future__ import annotations

import pytest

from notifier.dns.alignment import aligned, organisational_domain


@pytest.mark.parametrize("suffix", ["aland.fi", "org.se", "priv.no"])
def test_multi_label_public_suffixes_are_not_registrable(suffix: str) -> None:
    # the old rule took these for organisational domains
    assert organisational_domain(f"firma.{suffix}") == f"firma.{suffix}"
    assert organisational_domain(f"bounce.evil.{suffix}") == f"evil.{suffix}"
    assert organisational_domain(suffix) == suffix  # a suffix is only itself
    assert not aligned(f"bounce.evil.{suffix}", f"firma.{suffix}")
    assert not aligned(f"evil.{suffix}", f"firma.{suffix}")
    assert not aligned(suffix, f"firma.{suffix}")


def test_evil_org_se_does_not_align_with_firma_org_se() -> None:
    assert not aligned("bounce.evil.org.se", "firma.org.se")
    assert aligned("bounce.firma.org.se", "firma.org.se")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("acme.fi", "acme.fi"),
        ("bounce.acme.fi", "acme.fi"),
        ("a.b.mail.acme.fi", "acme.fi"),
        ("kustwebb.se", "kustwebb.se"),
        ("mail.nordname.com", "nordname.com"),
        ("example.co.uk", "example.co.uk"),
        ("bounce.example.co.uk", "example.co.uk"),
        ("Bounce.ACME.fi", "acme.fi"),
    ],
)
def test_organisational_domain(domain: str, org: str) -> None:
    assert organisational_domain(domain) == org


def test_relaxed_and_strict_alignment() -> None:
    assert aligned("bounce.acme.fi", "acme.fi")
    assert aligned("acme.fi", "mail.acme.fi")
    assert not aligned("bounce.acme.fi", "acme.fi", strict=True)
    assert aligned("ACME.fi", "acme.fi", strict=True)
    assert not aligned("acme.fi", "acme.se")
    assert not aligned("acme.fi", "evil.example")


def test_a_trailing_dot_is_the_same_name() -> None:
    assert organisational_domain("bounce.acme.fi.") == "acme.fi"
    assert organisational_domain("bounce.evil.org.se.") == "evil.org.se"
    assert aligned("bounce.acme.fi.", "acme.fi")
    assert aligned("acme.fi.", "acme.fi", strict=True)
    assert not aligned("bounce.evil.org.se.", "firma.org.se")


def test_idn_domains_align_with_their_punycode() -> None:
    unicode_name = "äänekoskenpuutarha.fi"
    ascii_name = "xn--nekoskenpuutarha-unba.fi"
    assert organisational_domain(f"posti.{unicode_name}") == ascii_name
    assert organisational_domain(f"posti.{ascii_name}") == ascii_name
    assert aligned(f"bounce.{ascii_name}", unicode_name)
    assert aligned(f"bounce.{unicode_name}.", ascii_name)
    assert aligned("ÄÄNEKOSKENPUUTARHA.FI", ascii_name, strict=True)
    assert not aligned(f"bounce.{unicode_name}", ascii_name, strict=True)
    # an IDN under a multi-label suffix: still the suffix plus one label
    assert not aligned("posti.äänekoski.org.se", "firma.org.se")
    assert organisational_domain("posti.äänekoski.org.se") == "xn--nekoski-4waa.org.se"


def test_a_name_idna_refuses_is_compared_as_is() -> None:
    assert organisational_domain("localhost") == "localhost"
    assert aligned("LOCALHOST.", "localhost", strict=True)
    assert not aligned("localhost", "acme.fi")
