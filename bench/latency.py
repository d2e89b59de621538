"""Time to inbox: from the accept time stored with a message to the relay's 250.

For each set-up and rate, events are posted one per request to a real ``notifier
serve`` over HTTP, open-loop (each at its scheduled time, whatever the answers before
it), and relayed by the workers to an SMTP server on loopback in a process of its own —
Postfix's ``smtp-sink`` when installed, else aiosmtpd (``--relay``). The latency of a
message is its ``sent_at`` less its ``created_at``, both stored with it: ``created_at``
is taken in the accepting transaction, ``sent_at`` by the worker as the relay's 250
arrives (same clock, microseconds). ``--check-relay`` also has the relay note the time
of each 250 on its side (smtp-sink: the modification time of the file it writes per
message) and prints, on stderr, how far the two differ. The client and the relay are
lean (raw keep-alive HTTP, a C relay): on a 2-core machine they share the CPUs with what
they measure, and httpx with aiosmtpd took over a core at 300 events/s — without
reaching 300/s.

Set-ups (``--only`` picks some):

* ``sqlite/serve``: ``notifier serve`` with its worker (a process of its own by default;
  ``--serve-args "--worker-processes 0"`` puts it in the server's process), SQLite;
* ``sqlite/workers``: ``notifier serve --no-worker`` and ``--workers`` separate
  ``notifier worker`` processes, SQLite;
* ``postgres/workers``: the same on PostgreSQL (``--database-url`` or
  ``NOTIFIER_TEST_DATABASE_URL``; ``scripts/start-postgres.sh`` prints one).

    python bench/latency.py --json
    python bench/latency.py --only sqlite/serve --rates 2,50,300 --seconds 30

``--json`` prints one object per set-up and rate: ``{"database", "mode", "rate", "n",
"p50_ms", "p90_ms", "p99_ms", "max_ms"}``. Goals (issue 14): p50 <= 30 ms and p99 <=
150 ms at 2 and at 300 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like libraries (bench/dkim.py): never import from it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

BRANDS = ("acme", "kustwebb", "nordname")
LANGS = ("fi", "sv", "en")
SETUPS = ("sqlite/serve", "sqlite/workers", "postgres/workers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


# --- the SMTP server (a process of its own: its CPU is not the client's) ----------------


def smtp_server_main(port: int, out: Path) -> None:
    """aiosmtpd on 127.0.0.1:port; one line ``<time of the 250> <Message-ID>`` per
    message, written before the 250 is answered."""
    from aiosmtpd.controller import Controller

    sink = out.open("a", buffering=1)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message_id = "?"
            for line in bytes(envelope.original_content or b"").split(b"\r\n"):
                if not line:
                    break
                if line[:11].lower() == b"message-id:":
                    message_id = line[11:].strip().decode()
                    break
            sink.write(f"{time.time():.6f} {message_id}\n")
            return "250 2.0.0 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def read_250s(out: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            at, _, message_id = line.partition(" ")
            times.setdefault(message_id, float(at))
    return times


class Relay:
    """The relay the workers send to, in a process of its own; with ``record``, when it
    answered each message 250 (by Message-ID), as a check of ``sent_at``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"the relay exited ({self.proc.returncode})")

    def times(self) -> dict[str, float]:
        raise NotImplementedError

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class AiosmtpdRelay(Relay):
    """aiosmtpd (Python): notes the time in its DATA handler, before the 250 (always:
    a line per message costs it little beside parsing the message)."""

    def __init__(self, work: Path, record: bool) -> None:
        port = free_port()
        self.log = work / "smtp-250.log"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--smtp-server", str(port), str(self.log)],
            stdin=subprocess.DEVNULL,
        )
        wait_port(port, proc, "the SMTP server")
        super().__init__(proc, port)

    def times(self) -> dict[str, float]:
        return read_250s(self.log)


class SinkRelay(Relay):
    """Postfix's smtp-sink (C, one process). With ``record``, a file per message, whose
    last write is the body's end, just before the final dot; its modification time is
    the relay's time. A rough one: file times are the kernel's coarse clock, up to a
    tick (4 ms here) early — a file written at a send's start carried a time 3.4 ms
    before it. Writing the files also cost smtp-sink about 0.2 of a core at 300
    messages/s and 1.3 ms a message, so by default it only answers."""

    def __init__(self, work: Path, record: bool) -> None:
        port = free_port()
        # its own directory: smtp-sink runs as nobody, who cannot enter the work folder
        self.dir = Path(tempfile.mkdtemp(prefix="notifier-latency-sink-"))
        argv = [SMTP_SINK, f"127.0.0.1:{port}", "256"]
        if record:
            argv[1:1] = ["-d", f"{self.dir}/%H%M%S."]
        if os.geteuid() == 0:  # it refuses to run as root
            shutil.chown(self.dir, "nobody")
            argv[1:1] = ["-u", "nobody"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        wait_port(port, proc, "smtp-sink")
        self.seen: dict[str, float] = {}
        self.read: set[str] = set()
        super().__init__(proc, port)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def times(self) -> dict[str, float]:
        time.sleep(0.3)  # a file is opened at MAIL FROM: let the last ones end
        for name in os.listdir(self.dir):
            if name in self.read:
                continue
            path = self.dir / name
            with path.open("rb") as fh:
                head = fh.read(8192)
            message_id = None
            for line in head.split(b"\n"):
                if not line.strip():
                    break
                if line[:11].lower() == b"message-id:":
                    message_id = line[11:].strip().decode()
            if message_id is not None:
                self.seen.setdefault(message_id, path.stat().st_mtime)
                self.read.add(name)
        return dict(self.seen)


SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def start_relay(work: Path, kind: str, record: bool) -> Relay:
    if kind == "smtp-sink" or (kind == "auto" and os.path.exists(SMTP_SINK)):
        return SinkRelay(work, record)
    return AiosmtpdRelay(work, record)


# --- one set-up ------------------------------------------------------------------------------


def event(i: int, run: str) -> dict[str, Any]:
    from notifier import events as catalog

    spec = catalog.CATALOG["domain.renewal_reminder"]
    return {
        "event": "domain.renewal_reminder",
        "brand": BRANDS[i % len(BRANDS)],
        "recipient": {
            "email": f"holder{i}@customer{i % 997}.example",
            "name": f"Holder {i}",
            "language": LANGS[(i // 3) % len(LANGS)],
        },
        "data": {**spec.sample, "domain": f"{run}-{i}.fi", "days_left": 30 if i % 2 else 7},
        "idempotency_key": f"{run}-{i}",
    }


class Setup:
    """Fresh database, ``notifier serve`` (with or without its worker) and workers."""

    def __init__(self, name: str, work: Path, args: argparse.Namespace, smtp_port: int) -> None:
        self.database, self.mode = name.split("/")
        self.work = work
        self.args = args
        self.schema: str | None = None
        if self.database == "sqlite":
            self.db_url = f"sqlite:///{work / 'var' / 'notifier.db'}"
        else:
            base = args.database_url
            if not base:
                raise SystemExit(f"{name} needs --database-url or NOTIFIER_TEST_DATABASE_URL")
            import psycopg

            self.schema = f"latency_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in base else "?"
            self.db_url = f"{base}{sep}options=-csearch_path%3D{self.schema}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        self.env.update(
            NOTIFIER_VAR_DIR=str(work / "var"),
            NOTIFIER_KEY_DIR=str(args.keys),
            NOTIFIER_SECRET_KEY="bench-secret",
            NOTIFIER_DATABASE_URL=self.db_url,
            NOTIFIER_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
            NOTIFIER_DNS_RECHECK="off",
            PYTHONPATH=str(ROOT),
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.seen: set[str] = set()  # messages measured already
        self._box: Any = None
        self.port = free_port()
        self.token = self._token()

    def _token(self) -> str:
        from notifier.config import Settings
        from notifier.outbox import open_outbox
        from notifier.tokens import TokenStore

        settings = Settings(var_dir=self.work / "var")
        with open_outbox(settings, url=self.db_url) as box:
            return TokenStore(box).create(["events:write"], label="latency bench")[1]

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.work / log).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                env=self.env,
                cwd=self.work,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        serve = ["notifier.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        serve += self.args.serve_args.split()
        if self.mode == "workers":
            serve.append("--no-worker")
            for n in range(self.args.workers):
                self._spawn(["notifier.worker"], f"worker-{n}.log")
        wait_port(self.port, self._spawn(serve, "serve.log"), "notifier serve")

    def stop(self) -> None:
        if self._box is not None:
            self._box.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.schema:
            import psycopg

            with psycopg.connect(self.args.database_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")

    def _read(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one statement on the set-up's outbox (one connection, kept)."""
        from notifier.config import Settings
        from notifier.outbox import open_outbox

        if self._box is None:
            self._box = open_outbox(Settings(var_dir=self.work / "var"), url=self.db_url)
        return self._box.read(sql)

    def sent(self) -> dict[str, tuple[float, float]]:
        """Message-ID → (created_at, sent_at) of every message sent."""
        rows = self._read(
            "SELECT message_id, created_at, sent_at FROM outbox_messages WHERE sent_at IS NOT NULL"
        )
        return {str(m): (float(c), float(s)) for m, c, s in rows}

    def count_sent(self) -> int:
        """Messages sent so far (cheap: polled while waiting)."""
        return int(
            self._read("SELECT COUNT(*) FROM outbox_messages WHERE sent_at IS NOT NULL")[0][0]
        )


class _Connection:
    """One keep-alive HTTP/1.1 connection of the load generator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, whether the server keeps the connection)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if "content-length" not in fields:
            raise RuntimeError(f"answer without Content-Length: {lines[0]}")
        body = await self.reader.readexactly(int(fields["content-length"]))
        return status, body, fields.get("connection", "").lower() != "close"

    def close(self) -> None:
        self.writer.close()


async def post_open_loop(url: str, token: str, events: list[dict[str, Any]], rate: float) -> int:
    """Post each event at its scheduled time (open loop); returns how many got 202.

    A lean client (requests encoded beforehand, raw keep-alive connections): on a
    2-core machine the load generator shares the CPUs with the service it measures,
    and httpx took about 0.8 of a core at 300 requests/s, which the service then did
    not have. Says so on stderr when sends fell behind their schedule."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw = []
    for body in events:
        payload = json.dumps(body).encode()
        raw.append(
            (
                f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode()
            + payload
        )
    idle: list[_Connection] = []
    late: list[float] = []
    # at most this many connections, as a client pool would (a request waits for one);
    # past serve's limit (NOTIFIER_HTTP_MAX_CONNECTIONS) connections are answered 503
    connections = asyncio.Semaphore(200)

    async def one(request: bytes) -> bool:
        async with connections:
            return await send(request)

    async def send(request: bytes) -> bool:
        for attempt in range(3):
            reused = bool(idle)
            conn = idle.pop() if idle else _Connection(*await asyncio.open_connection(host, port))
            try:
                status, answer, keep = await conn.request(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()  # the idempotency key makes a retry safe
                if reused:  # closed by the server while idle (keep-alive timeout): so
                    for stale in idle:  # are those idle as long
                        stale.close()
                    idle.clear()
                elif attempt == 2:
                    raise
                continue
            if keep:
                idle.append(conn)
            else:
                conn.close()
            if status != 202:
                print(f"POST: {status} {answer[:200]!r}", file=sys.stderr)
            return status == 202
        return False

    start = time.monotonic()
    tasks = []
    for i, request in enumerate(raw):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        late.append(time.monotonic() - due)
        tasks.append(asyncio.create_task(one(request)))
    accepted = sum(await asyncio.gather(*tasks))
    for conn in idle:
        conn.close()
    behind = percentile(late, 0.99)
    if behind > 0.05:
        print(
            f"the client fell behind: p99 of a send's lateness {behind * 1000:.0f} ms",
            file=sys.stderr,
        )
    return accepted


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def measure(
    setup: Setup, rate: float, n: int, relay: Relay, timeout: float, check: bool
) -> dict[str, Any]:
    """Post ``n`` events at ``rate``; the latencies of their messages (all delivered,
    or what was within ``timeout``)."""
    events = [event(i, f"r{uuid.uuid4().hex[:8]}") for i in range(n)]
    before = setup.count_sent()
    url = f"http://127.0.0.1:{setup.port}"
    accepted = asyncio.run(post_open_loop(url, setup.token, events, rate))
    deadline = time.monotonic() + timeout
    while True:  # how many are sent, until all are: cheap on the CPU
        relay.alive()
        if setup.count_sent() - before >= accepted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    fresh = {m: v for m, v in setup.sent().items() if m not in setup.seen}
    setup.seen.update(fresh)
    latencies = [1000 * (sent - created) for created, sent in fresh.values()] or [float("nan")]
    if len(fresh) < accepted:
        print(f"only {len(fresh)} of {accepted} delivered in time", file=sys.stderr)
    if check:
        times = relay.times()
        gaps = sorted(1000 * (sent - times[m]) for m, (_, sent) in fresh.items() if m in times)
        if gaps:
            print(
                f"sent_at less the relay's time of the 250 ({len(gaps)} messages): min "
                f"{gaps[0]:.2f} ms, p50 {percentile(gaps, 0.5):.2f}, p99 "
                f"{percentile(gaps, 0.99):.2f}, max {gaps[-1]:.2f}",
                file=sys.stderr,
            )
    return {
        "database": setup.database,
        "mode": setup.mode,
        "rate": rate,
        "n": len(fresh),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p90_ms": round(percentile(latencies, 0.90), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


def make_keys(folder: Path) -> None:
    from notifier.compose.pipeline import Pipeline
    from notifier.config import Secret, Settings
    from notifier.signing.keys import KeyStore

    settings = Settings(var_dir=folder.parent / "keys-var", secret_key=Secret("bench-secret"))
    store = KeyStore(folder)
    for brand in Pipeline(settings).brands.all():
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm, bits=2048)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rates", default="2,300", help="events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="posting time per rate")
    ap.add_argument("--min-n", type=int, default=60, help="at least this many per rate")
    ap.add_argument("--max-n", type=int, default=4000, help="at most this many per rate")
    ap.add_argument("--only", default=",".join(SETUPS), help="set-ups, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (workers mode)")
    ap.add_argument("--database-url", default=os.environ.get("NOTIFIER_TEST_DATABASE_URL"))
    ap.add_argument(
        "--relay",
        choices=("auto", "smtp-sink", "aiosmtpd"),
        default="auto",
        help="the relay: Postfix's smtp-sink when installed (auto), else aiosmtpd",
    )
    ap.add_argument(
        "--check-relay",
        action="store_true",
        help="the relay notes each 250 too; print how far sent_at is from it (stderr)",
    )
    ap.add_argument(
        "--serve-args",
        default="",
        help='extra arguments for notifier serve ("--worker-processes 0")',
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smtp-server", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.smtp_server:
        smtp_server_main(int(args.smtp_server[0]), Path(args.smtp_server[1]))
        return
    rates = [float(r) for r in args.rates.split(",") if r]
    work_root = Path(tempfile.mkdtemp(prefix="notifier-latency-"))
    args.keys = work_root / "keys"
    make_keys(args.keys)
    relay = start_relay(work_root, args.relay, args.check_relay)
    if not args.json:
        print(f"relay: {type(relay).__name__}", flush=True)
    try:
        for name in [s for s in args.only.split(",") if s]:
            if name not in SETUPS:
                raise SystemExit(f"unknown set-up {name!r}; one of {', '.join(SETUPS)}")
            work = work_root / name.replace("/", "-")
            (work / "var").mkdir(parents=True)
            setup = Setup(name, work, args, relay.port)
            try:
                setup.start()
                measure(setup, 5, 10, relay, 120, False)  # warm up: not reported
                for rate in rates:
                    n = int(min(args.max_n, max(args.min_n, rate * args.seconds)))
                    result = measure(setup, rate, n, relay, 300, args.check_relay)
                    if args.json:
                        print(json.dumps(result), flush=True)
                    else:
                        print(
                            f"{name:18} {rate:6g}/s  n={result['n']:5}  p50 "
                            f"{result['p50_ms']:7.1f} ms  p90 {result['p90_ms']:7.1f}  p99 "
                            f"{result['p99_ms']:7.1f}  max {result['max_ms']:7.1f}",
                            flush=True,
                        )
            finally:
                setup.stop()
    finally:
        relay.stop()
        shutil.rmtree(work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
