"""aiosmtpd's SMTP session with a DATA phase that reads the message in blocks.

aiosmtpd reads DATA one line at a time (a ``readuntil`` and its bookkeeping per line:
a third of the inbound server's CPU for a 70-line DSN); this reads up to each
``.<CRLF>`` at once and checks the same rules afterwards: the size limit (552 after
the final dot), the line length limit (500), dot-unstuffing (RFC 5321 §4.5.2). A
connection lost before the final dot cancels the session as before — nothing is
handed to the handler.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import MISSING, SMTP, syntax

__all__ = ["BlockDataSMTP"]

log = logging.getLogger("mail.log")

_END = b".\r\n"
_TOO_MUCH = "552 Error: Too much mail data"
_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


class BlockDataSMTP(SMTP):
    """An aiosmtpd session whose DATA is read in blocks (``decode_data=False`` only)."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if refusal is None and self._too_long(content):
            refusal = _TOO_LONG
        if refusal is not None:
            await self.push(refusal)
            self._data_done()
            return
        # de-transparency (RFC 5321 §4.5.2): a leading dot is removed from every line
        if content.startswith(b"."):
            content = content[1:]
        content = content.replace(b"\r\n.", b"\r\n")
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._data_done()
        await self.push("250 OK" if status is MISSING else status)

    def _data_done(self) -> None:
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    def _too_long(self, data: bytes | bytearray) -> bool:
        return any(len(line) > self.line_length_limit - 2 for line in data.split(b"\r\n"))

    async def _read_data(self) -> tuple[bytes, str | None]:
        """The data up to the lone dot (that line excluded), and the refusal when it
        was over the size limit (most of it was then dropped while being read) or had
        an over-long line before it went over."""
        limit = self.data_size_limit or 0
        data = bytearray()
        dropped = 0
        refusal: str | None = None
        while True:
            try:
                block = await self._reader.readuntil(_END)
            except asyncio.LimitOverrunError as exc:  # no ".\r\n" within the reader's limit
                block = await self._reader.readexactly(exc.consumed)
            data += block
            if block.endswith(_END) and (
                data.endswith(b"\r\n" + _END) or (len(data) == len(_END) and not dropped)
            ):
                size = dropped + len(data) - len(_END)
                del data[-len(_END) :]
                if refusal is None and limit and size > limit:
                    refusal = _TOO_LONG if self._too_long(data) else _TOO_MUCH
                return bytes(data), refusal
            if limit and dropped + len(data) > limit + 5:
                # over the limit: read on to the end, keeping only what may end it
                if refusal is None:  # the first problem met is the one answered
                    refusal = _TOO_LONG if self._too_long(data) else _TOO_MUCH
                dropped += len(data) - 4
                del data[:-4]
