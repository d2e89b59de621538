"""SMTP delivery throughput: RelayTransport's pool vs one aiosmtplib.send per message.

Both run in the same process against the same local sink — Postfix's ``smtp-sink``
(Debian package ``postfix``) when installed, aiosmtpd otherwise — so the ratio is what
connection reuse and concurrency buy on this machine, with the sink's cost included::

    .venv/bin/python bench/smtp.py [--count 2000] [--size 10000] [--pool 8] [--json]

``--json`` prints one object: ``{"ours_msgs_per_s", "naive_msgs_per_s", "ratio"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.delivery.relay import RelayTransport
from notifier.delivery.transport import Envelope

SENDER = "bounce@bounces.bench.test"
HELO = "bench.notifier.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_messages(count: int, size: int) -> list[Envelope]:
    line = b"Your domain example.fi expires on 2026-12-31. Renew it now to keep it working.\r\n"
    body = line * max(1, size // len(line))
    envelopes = []
    for n in range(count):
        head = (
            f"From: Brand <no-reply@brand.test>\r\nTo: <user{n}@example.test>\r\n"
            f"Subject: Renewal reminder {n}\r\nMessage-ID: <bench-{n}@notifier.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        ).encode()
        envelopes.append(
            Envelope(
                message_id=f"<bench-{n}@notifier.test>",
                mail_from=SENDER,
                rcpt_to=f"user{n}@example.test",
                data=head + body,
            )
        )
    return envelopes


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the sink exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.recv(1)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the sink did not start")


@contextlib.contextmanager
def sink(kind: str) -> Iterator[tuple[str, int]]:
    """(name, port) of a running sink; stopped on exit."""
    binary = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if kind in ("auto", "smtp-sink") and binary is not None:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, proc)
            yield "smtp-sink", port
        finally:
            proc.terminate()
            proc.wait(10)
        return
    if kind == "smtp-sink":
        raise SystemExit("smtp-sink not installed (apt-get install postfix)")
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Ok"

    port = free_port()
    controller = Controller(Discard(), hostname="127.0.0.1", port=port, server_hostname="sink")
    controller.start()
    try:
        yield "aiosmtpd", port
    finally:
        controller.stop()


async def run_ours(port: int, messages: list[Envelope], pool: int) -> float:
    transport = RelayTransport(f"smtp://127.0.0.1:{port}", pool_size=pool, helo=HELO)
    try:
        start = time.perf_counter()
        results = await asyncio.gather(*(transport.send(m) for m in messages))
        elapsed = time.perf_counter() - start
    finally:
        await transport.close()
    failed = [r for r in results if r.outcome != "sent"]
    if failed:
        raise RuntimeError(f"ours: {len(failed)} not sent, e.g. {failed[0]}")
    return len(messages) / elapsed


async def run_naive(port: int, messages: list[Envelope]) -> float:
    start = time.perf_counter()
    for m in messages:  # the usual code: one connection per message
        await aiosmtplib.send(
            m.data,
            sender=m.mail_from,
            recipients=[m.rcpt_to],
            hostname="127.0.0.1",
            port=port,
            local_hostname=HELO,
        )
    return len(messages) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per run")
    parser.add_argument("--size", type=int, default=10_000, help="approximate bytes per message")
    parser.add_argument("--pool", type=int, default=8, help="RelayTransport pool size")
    parser.add_argument("--sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    messages = make_messages(args.count, args.size)
    with sink(args.sink) as (name, port):
        asyncio.run(run_ours(port, messages[:50], args.pool))  # warm-up: imports, caches
        naive = asyncio.run(run_naive(port, messages))
        ours = asyncio.run(run_ours(port, messages, args.pool))
    ratio = ours / naive
    if args.json:
        print(
            json.dumps(
                {
                    "ours_msgs_per_s": round(ours, 1),
                    "naive_msgs_per_s": round(naive, 1),
                    "ratio": round(ratio, 2),
                }
            )
        )
    else:
        size = len(messages[0].data)
        print(f"sink: {name} on 127.0.0.1:{port}; {args.count} messages of {size} bytes")
        print(f"naive (aiosmtplib.send per message): {naive:8.1f} msgs/s")
        print(f"ours  (RelayTransport, pool {args.pool}):     {ours:8.1f} msgs/s")
        print(f"ratio: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
