"""The feedback loop's figures: how fast ``notifier inbound`` takes reports.

``inbound_reports_per_s``: N messages are accepted and marked sent in a fresh SQLite
outbox (``synchronous=FULL``, as in production); ``notifier inbound`` runs as its own
process (the real command); C concurrent SMTP clients deliver one RFC 3464 DSN per
message to its VERP address (a hard 5.1.1 bounce: each one moves a message to
``bounced``, suppresses an address and writes a status event). Timed from the first
connection to the last 250; every message is checked ``bounced`` afterwards. Target:
≥ 1,000 DSNs/s.

    .venv/bin/python bench/feedback_inbound.py [--count 5000] [--clients 32]
        [--processes N] [--json]

``notifier inbound`` runs with ``--processes`` one per core by default (as the README
advises); ``inbound_reports_per_server_cpu_s`` counts all of them.

``--json`` prints one object with a key per measure in :data:`MEASURES` (more are
added by registering a function there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.compose.pipeline import Pipeline  # noqa: E402
from notifier.config import Secret, Settings  # noqa: E402
from notifier.delivery.transport import AttemptResult  # noqa: E402
from notifier.events import CATALOG  # noqa: E402
from notifier.feedback.verp import verp_for  # noqa: E402
from notifier.intake.accept import Intake, make_preparer  # noqa: E402
from notifier.outbox import Delivery, Status, open_outbox  # noqa: E402

SAMPLE = ROOT / "tests" / "feedback" / "samples" / "postfix_dsn_550_5.1.1.eml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sent_messages(settings: Settings, count: int) -> list[tuple[str, str, str]]:
    """``count`` messages stored and marked sent: (VERP, Message-ID, recipient)."""
    pipeline = Pipeline(settings)
    outbox = open_outbox(settings)
    intake = Intake(outbox, make_preparer(settings, pipeline, 0), max_batch=1000)
    sample: dict[str, Any] = {
        "event": "domain.renewal_reminder",
        "brand": "acme",
        "data": dict(CATALOG["domain.renewal_reminder"].sample),
    }
    for start in range(0, count, 1000):
        intake.accept_batch(
            [
                {
                    **sample,
                    "data": {**sample["data"], "domain": f"bench{n}.fi"},  # one occasion each
                    "recipient": {"email": f"user{n}@example.fi", "language": "fi"},
                }
                for n in range(start, min(count, start + 1000))
            ]
        )
    while claims := outbox.claim("bench", 1000):
        ok = AttemptResult("sent", host="mx.example.fi", code=250, enhanced="2.0.0", text="ok")
        outbox.complete(
            "bench",
            [
                Delivery(c.id, Status.SENT, attempt=ok, rcpt_to=c.rcpt_to, brand=c.brand)
                for c in claims
            ],
        )
    verp = verp_for(settings.keys_path)
    with outbox.transaction(write=False) as cur:
        rows = cur.execute(
            "SELECT id, mail_from, message_id, recipient FROM outbox_messages WHERE status = 'sent'"
        ).fetchall()
    out = [(verp.envelope_sender(int(i), str(f)), str(m), str(r)) for i, f, m, r in rows]
    intake.close()
    outbox.close()
    return out


async def _deliver(port: int, reports: list[tuple[str, bytes]], clients: int) -> None:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in reports:
        queue.put_nowait(item)

    async def client() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="mx.example.fi")
        await smtp.connect()
        try:
            while not queue.empty():
                rcpt, data = queue.get_nowait()
                errors, reply = await smtp.sendmail("", [rcpt], data)
                if errors or not reply.startswith("2.0.0 stored"):
                    raise RuntimeError(f"inbound refused a report: {errors} {reply}")
        finally:
            await smtp.quit()

    await asyncio.gather(*(client() for _ in range(clients)))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (Linux /proc), and of
    its child processes (``--processes N``: the servers are the children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(_cpu_seconds(int(child)) for child in children)


def inbound_reports_per_s(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        var = Path(tmp) / "var"
        settings = Settings(var_dir=var, secret_key=Secret("bench-secret"))
        sent = _sent_messages(settings, args.count)
        template = SAMPLE.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        reports = [
            (
                verp,
                template.replace(b"@@VERP@@", verp.encode())
                .replace(b"@@RCPT@@", rcpt.encode())
                .replace(b"@@MSGID@@", message_id.encode()),
            )
            for verp, message_id, rcpt in sent
        ]
        port = free_port()
        env = {**os.environ, "NOTIFIER_VAR_DIR": str(var), "NOTIFIER_SECRET_KEY": "bench-secret"}
        server = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "inbound", "--port", str(port)]
            + (["--processes", str(args.processes)] if args.processes != 1 else []),
            env=env,
            cwd=tmp,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("notifier inbound did not start") from None
                    time.sleep(0.1)
            asyncio.run(_deliver(port, reports[:20], 2 * args.processes))  # warm-up
            cpu_before = _cpu_seconds(server.pid)
            start = time.perf_counter()
            asyncio.run(_deliver(port, reports[20:], args.clients))
            elapsed = time.perf_counter() - start
            # what one core of the server did per report: a figure a loaded machine
            # (clients and other work sharing the cores) does not distort
            args.server_cpu_per_report = (_cpu_seconds(server.pid) - cpu_before) / (
                len(reports) - 20
            )
        finally:
            server.terminate()
            server.wait(10)
        with open_outbox(settings) as outbox, outbox.transaction(write=False) as cur:
            row = cur.execute(
                "SELECT COUNT(*) FROM outbox_messages WHERE status = 'bounced'"
            ).fetchone()
            bounced = int(row[0]) if row else 0
        if bounced != len(reports):
            raise RuntimeError(f"{bounced} of {len(reports)} messages bounced")
        return (len(reports) - 20) / elapsed


#: every figure this bench can measure, by its JSON key
MEASURES: dict[str, Callable[[argparse.Namespace], float]] = {
    "inbound_reports_per_s": inbound_reports_per_s,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="reports per run")
    parser.add_argument("--clients", type=int, default=32, help="concurrent SMTP clients")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="notifier inbound --processes (default: one per core)",
    )
    parser.add_argument("--only", action="append", choices=sorted(MEASURES), help="measure only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    for key in args.only or list(MEASURES):
        figures[key] = round(MEASURES[key](args), 1)
        if key == "inbound_reports_per_s" and getattr(args, "server_cpu_per_report", 0):
            figures["inbound_reports_per_server_cpu_s"] = round(1 / args.server_cpu_per_report, 1)
            figures["inbound_processes"] = args.processes
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
