"""SMTP delivery throughput: RelayTransport's pool vs one aiosmtplib.send per message.

Both run in the same process against the same local sink — Postfix's ``smtp-sink``
(Debian package ``postfix``) when installed, aiosmtpd otherwise — so the ratio is what
connection reuse and concurrency buy on this machine, with the sink's cost included::

    .venv/bin/python bench/smtp.py [--count 2000] [--size 10000] [--pool 8] [--json]

``--json`` prints one object: ``{"ours_msgs_per_s", "naive_msgs_per_s", "ratio"}``.

``--rtt MS`` measures time to inbox instead, as over a network: the sink is reached
through a proxy that holds every chunk MS/2 in each direction (loopback has no
``netem`` here), and ``--count`` messages are sent one after another — ours on a warm
pooled connection (with PIPELINING when the sink offers it: two round trips a message,
four without), naive with ``aiosmtplib.send`` (a connection each). ``--json`` then
prints ``{"rtt_ms", "ours_ms_per_message", "naive_ms_per_message", "ratio"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
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


@contextlib.contextmanager
def delayed(port: int, rtt_ms: float) -> Iterator[int]:
    """A TCP proxy to ``127.0.0.1:port`` on a port of its own that delivers every chunk
    ``rtt_ms / 2`` after it arrived, in each direction (latency, not a bandwidth cap)."""
    one_way = rtt_ms / 2000
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    listen = free_port()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + one_way, data))
            queue.put_nowait((loop.time() + one_way, b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            reading.cancel()
            writer.close()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        except asyncio.CancelledError:  # the proxy stops: end quietly
            writer.close()

    stop = asyncio.Event()

    async def serve() -> None:
        server = await asyncio.start_server(connected, "127.0.0.1", listen)
        ready.set()
        await stop.wait()
        server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield listen
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


async def one_by_one(port: int, messages: list[Envelope], naive: bool) -> float:
    """Median milliseconds from handing a message over to its 250, one at a time."""
    transport = RelayTransport(f"smtp://127.0.0.1:{port}", pool_size=1, helo=HELO)
    times = []
    try:
        if not naive:
            await transport.send(messages[0])  # the session is open before timing
        for m in messages[1:]:
            start = time.perf_counter()
            if naive:
                await send_naive(port, m)
            else:
                result = await transport.send(m)
                if result.outcome != "sent":
                    raise RuntimeError(f"ours: not sent: {result}")
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await transport.close()
    return statistics.median(times)


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


async def send_naive(port: int, m: Envelope) -> None:
    """The usual code: one connection per message."""
    await aiosmtplib.send(
        m.data,
        sender=m.mail_from,
        recipients=[m.rcpt_to],
        hostname="127.0.0.1",
        port=port,
        local_hostname=HELO,
    )


async def run_naive(port: int, messages: list[Envelope]) -> float:
    start = time.perf_counter()
    for m in messages:
        await send_naive(port, m)
    return len(messages) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per run")
    parser.add_argument("--size", type=int, default=10_000, help="approximate bytes per message")
    parser.add_argument("--pool", type=int, default=8, help="RelayTransport pool size")
    parser.add_argument("--sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto")
    parser.add_argument("--rtt", type=float, help="time to inbox at this round trip (ms)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.rtt is not None:
        return main_rtt(args)
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


def main_rtt(args: argparse.Namespace) -> int:
    messages = make_messages(min(args.count, 200), args.size)
    with sink(args.sink) as (name, port), delayed(port, args.rtt) as proxy:
        naive = asyncio.run(one_by_one(proxy, messages, naive=True))
        ours = asyncio.run(one_by_one(proxy, messages, naive=False))
    figures = {
        "rtt_ms": args.rtt,
        "ours_ms_per_message": round(ours, 1),
        "naive_ms_per_message": round(naive, 1),
        "ratio": round(naive / ours, 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"sink: {name} behind a {args.rtt:g} ms round trip; {len(messages) - 1} messages")
        print(f"naive (aiosmtplib.send per message): {naive:7.1f} ms a message")
        print(f"ours  (RelayTransport, warm session): {ours:7.1f} ms a message")
        print(f"ratio: {naive / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
