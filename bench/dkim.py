"""Benchmark: notifier's DKIM signer against stock ``dkim.sign`` (RSA-2048, 10 kB message).

Both sign the same message with the same key, relaxed/relaxed, the same ``h=`` list.
Ours is verified with ``dkim.verify`` before anything is timed. Run::

    .venv/bin/python bench/dkim.py [-n 300] [--json]
"""

from __future__ import annotations

import argparse
import email.policy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

# This file is called dkim.py: keep its folder off sys.path so ``import dkim`` below is
# dkimpy, not this script (for mypy: run it with --explicit-package-bases).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import dkim  # noqa: E402

from notifier.brands import Brand  # noqa: E402
from notifier.signing.dkim import Signer, header_list  # noqa: E402
from notifier.signing.keys import KeyStore  # noqa: E402

TARGET_BYTES = 10_000


def make_brand() -> Brand:
    return Brand.model_validate(
        {
            "id": "bench",
            "name": "Acme Digital",
            "legal_name": "Acme Digital Oy",
            "address": ["Hämeenkatu 20 A", "33200 Tampere"],
            "from_address": "verkkotunnukset@acme.fi",
            "reply_to": "tuki@acme.fi",
            "sending_domain": "acme.fi",
            "link_domain": "domain.acme.fi",
            "logo_url": "https://domain.acme.fi/logo.png",
            "support": {"email": "tuki@acme.fi"},
            "dkim": [{"name": "bench2026", "algorithm": "rsa", "active": True}],
        }
    )


def make_message(size: int = TARGET_BYTES) -> bytes:
    """A renewal reminder like the pipeline's: multipart/alternative text + HTML, CRLF."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Acme Digital <verkkotunnukset@acme.fi>"
    msg["To"] = "Aino Virtanen <aino.virtanen@example.fi>"
    msg["Reply-To"] = "Acme Digital <tuki@acme.fi>"
    msg["Subject"] = "Verkkotunnuksesi virtasenpuutarha.fi vanhenee 2.12.2026"
    msg["Date"] = format_datetime(datetime(2026, 11, 26, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = "<4f9c2a8e1b7d4c0e9a5f3b2d1c6e8f70@acme.fi>"
    msg["List-Unsubscribe"] = "<https://domain.acme.fi/u/4f9c2a8e1b7d>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    para = (
        "Verkkotunnuksesi virtasenpuutarha.fi voimassaolo päättyy 2.12.2026. Uusi se ajoissa, "
        "jotta verkkosivut ja sähköposti toimivat keskeytyksettä. Automaattinen uusinta ei ole "
        "käytössä. Hinta 12,50 € / vuosi (sis. ALV 25,5 %).\n\n"
    )
    text, html = "Hei Aino,\n\n", "<html><body><p>Hei Aino,</p>"
    while len(text.encode()) + len(html.encode()) < size * 0.8:
        text += para
        html += (  # indented like template output, so whitespace canonicalisation has work
            '    <p style="margin:0 0 12px 0;font-family:Arial,sans-serif;color:#1d1d1f;">'
            + para.strip()
            + ' <a href="https://domain.acme.fi/renew/virtasenpuutarha.fi">Uusi nyt</a></p>\n'
        )
    msg.set_content(text + "Terveisin\nAcme Digital\n")
    msg.add_alternative(html + "</body></html>\n", subtype="html")
    return msg.as_bytes()


def per_message_ms(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up (caches, first-call imports)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="signatures per signer")
    parser.add_argument("--json", action="store_true", help="print only the JSON figures")
    args = parser.parse_args(argv)

    brand = make_brand()
    message = make_message()
    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(Path(tmp) / "keys")
        record = store.generate(brand, "bench2026", "rsa", 2048)
        pem = store.path(brand.id, "bench2026").read_bytes()
        signer = Signer(store)

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            wanted = name.decode() if isinstance(name, bytes) else name
            return record.value.encode() if wanted == record.name + "." else None

        ours = signer.sign(message, brand)
        if not dkim.verify(ours, dnsfunc=dnsfunc):
            print("our signature does not verify with dkimpy", file=sys.stderr)
            return 1
        include = header_list(dkim.rfc822_parse(message)[0])

        def stock() -> bytes:
            header: bytes = dkim.sign(
                message,
                b"bench2026",
                b"acme.fi",
                pem,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
            return header

        if not dkim.verify(stock() + message, dnsfunc=dnsfunc):
            print("stock dkimpy signature does not verify", file=sys.stderr)
            return 1

        ours_ms = per_message_ms(lambda: signer.sign(message, brand), args.n)
        stock_ms = per_message_ms(stock, args.n)

    figures = {
        "ours_ms_per_msg": round(ours_ms, 4),
        "dkimpy_ms_per_msg": round(stock_ms, 4),
        "ratio": round(stock_ms / ours_ms, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"message: {len(message)} bytes, RSA-2048, relaxed/relaxed, "
            f"h={':'.join(h.decode() for h in include)}"
        )
        print(f"ours (notifier.dkim.Signer, OpenSSL RSA): {ours_ms:.3f} ms/msg")
        print(f"stock dkim.sign (pure-Python RSA):        {stock_ms:.3f} ms/msg")
        print(f"ratio: {figures['ratio']}x  (n={args.n} each, verified with dkim.verify)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
