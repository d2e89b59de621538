"""The capture transport: one parseable .eml per attempt, written atomically."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

from notifier.delivery import transport_from_url
from notifier.delivery.capture import CaptureTransport
from notifier.delivery.transport import AttemptResult
from tests.delivery.support import SENDER, make_envelope

# ----------------------------------------------------------------------------- capture


def test_capture_writes_parseable_eml_atomically(tmp_path: Path) -> None:
    mail_dir = tmp_path / "var" / "mail"

    async def go() -> list[AttemptResult]:
        transport = transport_from_url(None, mail_dir)
        assert isinstance(transport, CaptureTransport)
        try:
            return [await transport.send(make_envelope(3)), await transport.send(make_envelope(3))]
        finally:
            await transport.close()

    results = asyncio.run(go())
    assert [(r.outcome, r.host) for r in results] == [("sent", "capture")] * 2
    files = sorted(mail_dir.iterdir())
    assert len(files) == 2  # a retry is a second file, never an overwrite
    assert all(f.name.endswith("-msg-3@notifier.test.eml") for f in files)
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Renewal reminder 3"
    assert msg["Message-ID"] == "<msg-3@notifier.test>"
    assert msg["Return-Path"] == f"<{SENDER}>"
    assert msg["Delivered-To"] == "alice@example.test"
    assert "Your domain expires soon." in msg.get_content()
    assert str(files[0]) in results[0].text or files[0].name in " ".join(r.text for r in results)


def test_capture_refuses_a_bad_envelope(tmp_path: Path) -> None:
    async def go() -> AttemptResult:
        return await CaptureTransport(tmp_path).send(make_envelope(rcpt="a@b.test\r\nBcc: x@y"))

    assert asyncio.run(go()).outcome == "permanent"
    assert list(tmp_path.iterdir()) == []


def test_capture_disk_error_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    async def go() -> AttemptResult:
        return await CaptureTransport(blocker / "mail").send(make_envelope())

    result = asyncio.run(go())
    assert result.outcome == "transient"
    assert "capture" in result.text
