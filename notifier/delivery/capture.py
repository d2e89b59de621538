"""The capture transport, the embedded default: each message becomes an .eml file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..errors import DeliveryError
from .envelope import Prepared, crlf, prepare
from .failures import result_from_error, translated
from .transport import AttemptResult, Envelope

__all__ = ["CaptureTransport"]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]+")


def _safe_id(message_id: str) -> str:
    name = _UNSAFE_NAME.sub("_", message_id.strip().strip("<>")).strip("._")
    return name[:100] or "message"


class CaptureTransport:
    """The embedded default: every message becomes ``mail_dir/<UTC time>-<message id>.eml``.

    The file is the message as it would have been sent, preceded by ``Return-Path``
    and ``Delivered-To`` for the envelope; it is written to a temporary file, fsync'd
    and linked into place, so a reader never sees half a message.
    """

    host = "capture"

    def __init__(self, mail_dir: Path | str) -> None:
        self.mail_dir = Path(mail_dir)

    def __repr__(self) -> str:
        return f"CaptureTransport({str(self.mail_dir)!r})"

    async def send(self, envelope: Envelope) -> AttemptResult:
        try:
            msg = prepare(envelope)
            if envelope.ready is not None:
                await envelope.ready()
            path = await asyncio.to_thread(self._write, msg)
        except DeliveryError as exc:
            return result_from_error(exc, envelope)
        return AttemptResult("sent", host=self.host, text=f"captured as {path}")

    def _write(self, msg: Prepared) -> Path:
        env = msg.envelope
        head = b"Return-Path: <" + msg.sender.wire + b">\r\nDelivered-To: " + msg.rcpt.wire
        content = head + b"\r\n" + crlf(env.data)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        base = f"{stamp}-{_safe_id(env.message_id)}"
        tmp = self.mail_dir / f".{base}.{uuid.uuid4().hex}.tmp"
        try:
            with translated("capture", self.host):
                self.mail_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                try:
                    view = memoryview(content)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                for n in range(1000):  # link() never overwrites an existing capture
                    path = self.mail_dir / (f"{base}.eml" if n == 0 else f"{base}-{n}.eml")
                    try:
                        os.link(tmp, path)
                        break
                    except FileExistsError:
                        continue
                else:
                    raise FileExistsError(f"too many captures named {base}")
                dir_fd = os.open(self.mail_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        finally:
            with contextlib.suppress(OSError):  # gone already, or never created
                tmp.unlink()
        return path

    async def close(self) -> None:
        return None
