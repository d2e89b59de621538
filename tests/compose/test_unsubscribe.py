"""Unsubscribe tokens carry the mail's language; links sent before still read."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json

import pytest

from notifier.compose import unsubscribe as links
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Recipient
from notifier.errors import ValidationError

SECRET = b"unsubscribe test secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def test_token_round_trips_the_language() -> None:
    sub = links.Subscription("kustwebb", "aino@example.fi", "domain.renewed", "sv")
    assert links.read_token(SECRET, links.make_token(SECRET, sub)) == sub


def test_three_field_token_reads_without_a_language() -> None:
    # the v2 format before the language was added: brand NUL address NUL event
    old = links.Subscription("acme", "aino@example.fi", "domain.renewed")
    token = links.make_token(SECRET, old)
    assert links.read_token(SECRET, token).language is None
    cipher = links._cipher(SECRET)
    plain = b"acme\x00aino@example.fi\x00domain.renewed"
    made_before = _b64(b"\x02" + cipher.encrypt(plain, [b"\x02"]))
    assert links.read_token(SECRET, made_before) == old


def test_legacy_signed_token_still_reads() -> None:
    payload = json.dumps(["acme", "aino@example.fi", "domain.renewed"]).encode()
    mac = hmac.new(SECRET, payload, hashlib.sha256).digest()[:16]
    sub = links.read_token(SECRET, f"{_b64(payload)}.{_b64(mac)}")
    assert sub == links.Subscription("acme", "aino@example.fi", "domain.renewed")


def test_token_with_too_many_fields_is_refused() -> None:
    cipher = links._cipher(SECRET)
    plain = b"acme\x00a@example.fi\x00domain.renewed\x00fi\x00extra"
    with pytest.raises(ValidationError):
        links.read_token(SECRET, _b64(b"\x02" + cipher.encrypt(plain, [b"\x02"])))


@pytest.mark.parametrize(
    ("brand", "wanted", "written"),
    [
        ("acme", "en", "en"),
        ("kustwebb", "sv", "sv"),
        ("kustwebb", None, "sv"),
        ("acme", "de", "fi"),
    ],
)
def test_mail_link_carries_the_language_the_mail_is_written_in(
    pipeline: Pipeline, brand: str, wanted: str | None, written: str
) -> None:
    event = pipeline.sample("domain.renewed", brand, "fi")
    event = dataclasses.replace(event, recipient=Recipient("aino@example.fi", "Aino", wanted))
    rendered = pipeline.compose(event).rendered
    assert rendered.language == written
    assert rendered.unsubscribe_url is not None
    token = rendered.unsubscribe_url.rsplit("/", 1)[1]
    sub = links.read_token(pipeline.settings.secret(), token)
    assert (sub.brand, sub.email, sub.event, sub.language) == (
        brand,
        "aino@example.fi",
        "domain.renewed",
        written,
    )
