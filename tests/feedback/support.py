"""Report samples (``samples/*.eml``, written after real MTAs' output) filled in for a
message, and a sent message to bounce: accepted, then delivered by a real worker to
an aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path

from notifier.feedback.inbound import InboundServer, Receiver
from notifier.feedback.verp import verp_for
from notifier.outbox import Outbox, Status
from tests.smtpd import SMTPTestServer
from tests.test_outbox import raw_event
from tests.worker.support import BRANDS, run_worker

SAMPLES = Path(__file__).parent / "samples"


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sample(
    name: str,
    *,
    rcpt: str = "aino@example.fi",
    verp: str = "b-1-aaaaaaaaaaaaaaaa@bounce.acme.fi",
    message_id: str = "<0123456789abcdef@acme.fi>",
) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    for marker, value in ((b"@@RCPT@@", rcpt), (b"@@VERP@@", verp), (b"@@MSGID@@", message_id)):
        raw = raw.replace(marker, value.encode())
    return raw


def send_one(
    box: Outbox,
    key_dir: Path,
    smtp_server: SMTPTestServer,
    *,
    to: str = "aino@example.fi",
    brand: str = "acme",
    event: str = "domain.renewal_reminder",
) -> tuple[int, str, str]:
    """Accept one event and deliver it: (id, Message-ID, the VERP envelope sender)."""
    accepted = box.accept(raw_event(event, brand=brand, to=to))  # type: ignore[attr-defined]
    before = len(smtp_server.messages)
    stats = run_worker(box, key_dir, smtp_server.url)
    assert stats.sent == 1
    record = box.get(accepted.id)
    assert record.status == Status.SENT
    got = smtp_server.messages[before]
    return accepted.id, record.message_id, got.mail_from


class InboundThread:
    """``notifier inbound``'s SMTP server on 127.0.0.1:free port, in its own thread and
    event loop, as the real command runs it."""

    def __init__(self, box: Outbox, key_dir: Path, *, max_size: int = 2 * 1024 * 1024) -> None:
        self.receiver = Receiver(
            box.outbox if hasattr(box, "outbox") else box,
            verp_for(key_dir),
            [b.envelope_domain for b in BRANDS.all()],
        )
        self.server = InboundServer(self.receiver, "127.0.0.1", 0, max_size=max_size)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> InboundThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def send(self, raw: bytes, rcpt: str, *, sender: str = "") -> tuple[int, bytes]:
        """One report over SMTP; the reply to the final dot."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo("mx.example.fi")
            code, text = client.mail(sender)
            assert code == 250, text
            code, text = client.rcpt(rcpt)
            if code != 250:
                return code, text
            return client.data(crlf(raw))  # as an MTA sends it (smtplib leaves bytes alone)
