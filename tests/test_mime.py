from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.compose import mime
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Recipient
from notifier.errors import HeaderInjection, ValidationError

WHEN = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def pipeline(verified_pipeline: Pipeline) -> Pipeline:
    """Brands sending as themselves (the sender decision has tests of its own)."""
    return verified_pipeline


def parse(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_structure_and_headers(pipeline: Pipeline) -> None:
    c = pipeline.compose(
        pipeline.sample("domain.renewed", "acme", "fi"), date=WHEN, message_id="<m1@acme.fi>"
    )
    data = c.outgoing.data
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content_charset() == "utf-8"
    assert msg["From"] == "Acme Digital <verkkotunnukset@acme.fi>"
    assert msg["Reply-To"] == "Acme Digital <tuki@acme.fi>"
    assert msg["To"] == "Aino Virtanen <aino.virtanen@example.fi>"
    assert msg["Message-ID"] == "<m1@acme.fi>"
    assert msg["Date"] == "Thu, 26 Nov 2026 09:30:00 +0200"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "fi"
    assert str(msg["Subject"]) == c.rendered.subject
    assert "äänekoskenpuutarha.fi" in msg["Subject"]
    assert plain.get_content().replace("\r\n", "\n") == c.rendered.text
    assert html.get_content().replace("\r\n", "\n") == c.rendered.html
    assert c.outgoing.mail_from == "bounces@bounce.acme.fi"
    assert c.outgoing.rcpt_to == "aino.virtanen@example.fi"


def test_list_unsubscribe_only_on_optional_mail(pipeline: Pipeline) -> None:
    optional = parse(
        pipeline.compose(pipeline.sample("domain.renewed", "acme", "en")).outgoing.data
    )
    assert optional["List-Unsubscribe"].startswith("<https://domain.acme.fi/u/")
    assert optional["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mandatory = parse(
        pipeline.compose(pipeline.sample("domain.renewal_reminder", "acme", "en")).outgoing.data
    )
    assert mandatory["List-Unsubscribe"] is None
    assert mandatory["List-Unsubscribe-Post"] is None


def test_encoded_display_names_and_idn_addresses(pipeline: Pipeline) -> None:
    ev = pipeline.sample("domain.renewed", "kustwebb", "sv")
    ev = dataclasses.replace(
        ev,
        recipient=Recipient(
            "åsa@xn--lindqvist-bygg-hlb.se".replace("å", "a"), 'Åsa "Lindqvist", Bygg', "sv"
        ),
    )
    msg = parse(pipeline.compose(ev).outgoing.data)
    to = msg["To"]
    assert to.addresses[0].display_name == 'Åsa "Lindqvist", Bygg'
    assert len(to.addresses) == 1  # a comma in a name never makes a second recipient


def test_long_lines_and_lone_dots_are_safe(pipeline: Pipeline) -> None:
    c = pipeline.compose(pipeline.sample("domain.renewed", "acme", "en"))
    r = dataclasses.replace(c.rendered, text="line\n.\nnext " + "x" * 3000 + "\r\nend\n")
    out = mime.build(r, c.sender, message_id="<x@acme.fi>")
    assert all(len(line) <= 998 for line in out.data.split(b"\r\n"))
    assert b"\r\n.\r\n" not in out.data
    plain = next(parse(out.data).iter_parts())
    assert plain.get_content().replace("\r\n", "\n") == "line\n.\nnext " + "x" * 3000 + "\nend\n"


@pytest.mark.parametrize("bad", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb", "a\x00", "a\u2028b"])
def test_builder_refuses_line_breaks_in_headers(pipeline: Pipeline, bad: str) -> None:
    c = pipeline.compose(pipeline.sample("domain.renewed", "acme", "en"))
    with pytest.raises(HeaderInjection):
        mime.build(
            dataclasses.replace(c.rendered, recipient=Recipient("a@b.fi", bad)),
            c.sender,
            message_id="<x@y>",
        )
    with pytest.raises(HeaderInjection):
        mime.build(dataclasses.replace(c.rendered, subject=bad), c.sender, message_id="<x@y>")


EXPECTED_HEADERS = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-language",
    "auto-submitted",
    "list-unsubscribe",
    "list-unsubscribe-post",
}
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


@settings(max_examples=300, deadline=None)
@given(name=text, registrar=text)
def test_no_input_can_create_a_header(pipeline: Pipeline, name: str, registrar: str) -> None:
    """Whatever lands in a name or in subject data: either intake refuses it, or the
    message has exactly the expected headers, with the value intact."""
    raw = {
        "event": "transfer.out_completed" if False else "domain.renewed",
        "brand": "acme",
        "recipient": {"email": "aino@example.fi", "name": name or None, "language": "en"},
        "data": {**pipeline.sample("domain.renewed", "acme").data.model_dump(mode="json")},
    }
    raw["data"].pop("tld")
    try:
        ev = pipeline.validate(raw)
    except ValidationError as exc:
        assert any(ch in name for ch in "\r\n\x00\u2028\u2029\x85") or any(
            ord(ch) < 32 or ord(ch) == 127 for ch in name
        ), exc
        return
    c = pipeline.compose(ev)
    msg = parse(c.outgoing.data)
    assert {k.lower() for k in msg.keys()} == EXPECTED_HEADERS
    assert len(msg.get_all("To")) == 1
    if name.strip():
        # adjacent encoded-words join without a space (RFC 2047 §6.2); decode_header does that
        raw_to = c.outgoing.data.split(b"\r\nTo: ", 1)[1].split(b"\r\nReply-To:", 1)[0]
        decoded = str(make_header(decode_header(raw_to.decode("ascii").replace("\r\n ", " "))))
        assert decoded.endswith(" <aino@example.fi>")
        shown = decoded.removesuffix(" <aino@example.fi>")
        if raw_to.startswith(b'"'):  # an ASCII name with specials is a quoted-string
            shown = shown[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        assert shown == " ".join(name.split()), (name, raw_to)
    # and straight into the builder, bypassing intake: refused, or headers intact
    r = dataclasses.replace(
        c.rendered, subject=registrar or "x", recipient=Recipient("a@b.fi", name or None)
    )
    try:
        out = mime.build(r, c.sender, message_id="<x@acme.fi>")
    except HeaderInjection:
        return
    msg = parse(out.data)
    assert {k.lower() for k in msg.keys()} == EXPECTED_HEADERS
    assert " ".join(str(msg["Subject"]).split()) == " ".join((registrar or "x").split())


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 114, 1000])
def test_base64_lines_are_76_characters_and_crlf(size: int) -> None:
    text = "ä" * size
    enc = base64.b64encode(text.encode("utf-8"))
    expected = b"".join(enc[i : i + 76] + b"\r\n" for i in range(0, len(enc), 76))
    assert mime._b64(text) == expected


def _subject_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.startswith(b"Subject: "))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if not line.startswith((b" ", b"\t")):
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_encoded_subject_lines_are_at_most_76_octets(pipeline: Pipeline, lang: str) -> None:
    """RFC 2047 §2: a header line with encoded-words is at most 76 octets, the first one
    (after ``Subject: ``) included; decoding gives the subject back."""
    from notifier import events

    encoded = 0
    for name in events.CATALOG:
        composed = pipeline.compose(pipeline.sample(name, "acme", lang), date=WHEN)
        lines = _subject_lines(composed.outgoing.data)
        if b"=?utf-8?" in b"".join(lines):
            encoded += 1
            assert all(len(line) <= 76 for line in lines), (name, lines)
        assert str(parse(composed.outgoing.data)["Subject"]) == composed.rendered.subject
    assert encoded > 0


@given(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=300)
)
@settings(max_examples=200, deadline=None)
def test_any_non_ascii_subject_folds_within_76(text: str) -> None:
    value = mime.header_text("Päivä " + text, "subject")
    lines = ("Subject: " + value).split("\r\n")
    assert all(len(line.encode()) <= 76 for line in lines if "=?utf-8?" in line)
