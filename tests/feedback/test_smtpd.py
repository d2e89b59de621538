"""The block-reading DATA phase against aiosmtpd's own, over real loopback connections:
the same bytes in, the same replies and the same message content out — dot-stuffing,
lines ending in a dot, an empty message, messages far longer than a read, bytes
trickling in one at a time, the size limit, over-long lines — and a connection lost
before the final dot hands nothing to the handler."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from notifier.feedback.smtpd import BlockDataSMTP


class Keep:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.contents.append(envelope.original_content)
        return "250 2.0.0 kept"


async def _session(
    cls: type[SMTP], chunks: list[bytes], *, size: int = 1000, close_early: bool = False
) -> tuple[list[bytes], list[bytes]]:
    """Send ``chunks`` (one write each) to a server of ``cls``; its replies and what
    its handler received."""
    keep = Keep()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: cls(keep, data_size_limit=size, decode_data=False), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)
    if close_early:
        writer.close()
        await asyncio.sleep(0.2)
    else:
        writer.write(b"QUIT\r\n")
        while line := await reader.readline():
            replies.append(line)
        writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return [r.split(b" ", 1)[0] for r in replies], keep.contents


def _transaction(data: bytes) -> bytes:
    return b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.fi>\r\nDATA\r\n" + data


def _both(chunks: list[bytes], **kw: Any) -> tuple[list[bytes], list[bytes]]:
    stock = asyncio.run(_session(SMTP, chunks, **kw))
    ours = asyncio.run(_session(BlockDataSMTP, chunks, **kw))
    assert ours == stock
    return ours


LONG = b"".join(b"line %05d " % i + b"x" * (i % 900) + b"\r\n" for i in range(300))

MESSAGES = {
    "plain": b"Subject: hi\r\n\r\nbody\r\n.\r\n",
    "dot-stuffed": b"..\r\n..leading\r\n.lone-dot-stuffed\r\nend.\r\nx.\r\n.\r\n",
    "empty": b".\r\n",
    "lines ending in dots": b"a.\r\nb..\r\n.\r\n",
    "longer than a read": LONG + b".\r\n",
    "two messages": b"one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.fi>\r\nDATA\r\ntwo\r\n.\r\n",
    "bare newlines": b"a\n.\nb\r\n.\r\n",
}


@pytest.mark.parametrize("data", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("split", ["whole", "bytes", "lines"])
def test_same_replies_and_content_as_aiosmtpd(data: bytes, split: str) -> None:
    stream = _transaction(data)
    if split == "bytes":
        chunks = [stream[i : i + 1] for i in range(len(stream))] if len(stream) < 400 else [stream]
    elif split == "lines":
        chunks = stream.splitlines(keepends=True)
    else:
        chunks = [stream]
    replies, contents = _both(chunks, size=1_000_000)
    assert replies[-2] == b"250"  # the last message was kept
    assert contents


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        pytest.param((b"x" * 70 + b"\r\n") * 30 + b".\r\n", b"552", id="over the size limit"),
        pytest.param(b"z" * 2000 + b"\r\n.\r\n", b"500", id="over both: the long line first"),
        pytest.param(b"y" * 1200 + b"\r\nshort\r\n.\r\n", b"500", id="line too long"),
    ],
)
def test_refusals_as_aiosmtpd_and_the_session_goes_on(data: bytes, reply: bytes) -> None:
    after = b"MAIL FROM:<>\r\nRCPT TO:<a@b.fi>\r\nDATA\r\nsmall\r\n.\r\n"
    replies, contents = _both([_transaction(data) + after], size=1500)
    assert reply in replies and contents == [b"small\r\n"]


def test_connection_lost_before_the_final_dot_hands_nothing_over() -> None:
    _, contents = asyncio.run(
        _session(
            BlockDataSMTP, [_transaction(b"Subject: x\r\n\r\nhalf a report\r\n")], close_early=True
        )
    )
    assert contents == []
