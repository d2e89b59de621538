"""The quick DSN reader gives the email parser's answer or none at all: on every sample,
on hand-made variations of the DSNs (each either read the same way or left to the
parser), and on thousands of seeded random line edits of them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from notifier.feedback.reports import parse, parse_fast, parse_full

SAMPLES = Path(__file__).parent / "samples"
DSNS = ["postfix_dsn_550_5.1.1.eml", "dsn_delayed_4.2.2.eml", "exim_bounce.eml"]


def _sample(name: str) -> bytes:
    return (
        (SAMPLES / name)
        .read_bytes()
        .replace(b"@@VERP@@", b"bounces+m1.abc@bounce.acme.fi")
        .replace(b"@@RCPT@@", b"aino@example.fi")
        .replace(b"@@MSGID@@", b"<m1.x@acme.fi>")
    )


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _same_or_none(raw: bytes) -> bool:
    """True when the quick reader read ``raw``; fails when it read it differently."""
    fast = parse_fast(raw)
    if fast is None:
        return False
    assert fast == parse_full(raw), raw.decode("latin-1")
    return True


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.eml")))
@pytest.mark.parametrize("newline", ["lf", "crlf"])
def test_samples_read_alike(name: str, newline: str) -> None:
    raw = _sample(name)
    raw = _crlf(raw) if newline == "crlf" else raw
    assert _same_or_none(raw) == (name in DSNS)  # every plain DSN sample takes the quick path
    assert parse(raw) == parse_full(raw)


POSTFIX = _sample("postfix_dsn_550_5.1.1.eml")
DELAYED = _sample("dsn_delayed_4.2.2.eml")

#: (name, the DSN changed, whether the quick reader still reads it)
VARIATIONS: list[tuple[str, bytes, bool]] = [
    ("lower-case fields", POSTFIX.replace(b"Action: failed", b"action: failed"), True),
    ("folded status", POSTFIX.replace(b"Status: 5.1.1", b"Status:\n 5.1.1"), True),
    ("two blank lines", POSTFIX.replace(b"(EEST)\n\nFinal", b"(EEST)\n\n\nFinal"), True),
    ("blank lines at the end", POSTFIX.replace(b"table\n\n--4Xy", b"table\n\n\n\n--4Xy"), True),
    ("no blank line at the end", POSTFIX.replace(b"table\n\n--4Xy", b"table\n--4Xy"), True),
    (
        "a second, delayed recipient",
        POSTFIX.replace(
            b"Action: failed",
            b"Action: failed\nStatus: 5.1.1\n\nFinal-Recipient: rfc822; b@example.fi\n"
            b"Action: delayed",
            1,
        ),
        True,
    ),
    ("a repeated field", POSTFIX.replace(b"Status: 5.1.1", b"Status: 5.1.1\nStatus: 4.2.2"), True),
    ("preamble-less", POSTFIX.replace(b"This is a MIME-encapsulated message.\n", b""), True),
    (
        "boundary with trailing spaces",
        POSTFIX.replace(
            b'mx1.example.fi"\nContent-Transfer', b'mx1.example.fi  "\nContent-Transfer'
        ),
        True,
    ),
    (
        "delimiter followed by blanks",
        POSTFIX.replace(
            b"mx1.example.fi\nContent-Description: D", b"mx1.example.fi \t\nContent-Description: D"
        ),
        True,
    ),
    (
        "quoted-printable notification",
        POSTFIX.replace(
            b"Transfer-Encoding: 8bit\n\nThis is the",
            b"Transfer-Encoding: quoted-printable\n\nThis is the",
        ),
        True,
    ),
    ("message/rfc822 original", DELAYED, True),
    ("folded message-id", POSTFIX.replace(b"Message-ID: <m1", b"Message-ID:\n <m1"), False),
    ("no message-id", POSTFIX.replace(b"Message-ID: <m1.x@acme.fi>\n", b""), False),
    (
        "base64 delivery-status",
        POSTFIX.replace(
            b"Content-Type: message/delivery-status\n",
            b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n",
        ),
        False,
    ),
    (
        "non-ascii diagnostic",
        POSTFIX.replace(b"User unknown", "Käyttäjä tuntematon".encode()),
        False,
    ),
    ("a lone CR", POSTFIX.replace(b"Status: 5.1.1", b"Status: 5.1\r.1"), False),
    ("no closing delimiter", POSTFIX.replace(b"mx1.example.fi--", b"mx1.example.fi"), False),
    ("rfc 2231 boundary", POSTFIX.replace(b'boundary="', b'boundary*0="', 1), False),
    ("report-type missing", POSTFIX.replace(b"report-type=delivery-status;", b""), False),
    ("a field without a colon", POSTFIX.replace(b"Action: failed", b"Action failed"), False),
    ("a From line", POSTFIX.replace(b"Action: failed", b"From x: y\nAction: failed"), False),
    (
        "nested multipart",
        POSTFIX.replace(
            b"Content-Description: Notification\nContent-Type: text/plain; charset=utf-8",
            b"Content-Type: multipart/alternative; boundary=inner",
        ),
        False,
    ),
    (
        "an attached message before the report",
        POSTFIX.replace(
            b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
            b"Content-Type: message/rfc822\n",
        ),
        False,
    ),
]


@pytest.mark.parametrize(("raw", "quick"), [pytest.param(r, q, id=n) for n, r, q in VARIATIONS])
@pytest.mark.parametrize("newline", ["lf", "crlf"])
def test_variations_read_alike_or_left_to_the_parser(raw: bytes, quick: bool, newline: str) -> None:
    raw = _crlf(raw) if newline == "crlf" and b"\r" not in raw.replace(b"\r\n", b"") else raw
    assert _same_or_none(raw) == quick
    assert parse(raw) == parse_full(raw)


def _edit(lines: list[bytes], rng: random.Random) -> list[bytes]:
    out = list(lines)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(out))
        what = rng.randrange(6)
        if what == 0:
            del out[i]
        elif what == 1:
            out.insert(i, b"")
        elif what == 2:
            out.insert(i, out[rng.randrange(len(out))])  # a line repeated elsewhere
        elif what == 3:
            out[i] = b" " + out[i]  # made a continuation
        elif what == 4:
            out[i] = out[i].upper() if rng.random() < 0.5 else out[i].lower()
        else:
            j = rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
    return out


@pytest.mark.parametrize("name", DSNS)
def test_random_edits_read_alike_or_left_to_the_parser(name: str) -> None:
    rng = random.Random(f"fastdsn-{name}")
    lines = _sample(name).split(b"\n")
    quick = 0
    for _ in range(1500):
        raw = b"\n".join(_edit(lines, rng))
        quick += _same_or_none(raw if rng.random() < 0.5 else _crlf(raw))
    assert quick > 300  # most edits leave a readable DSN: the quick path was exercised
