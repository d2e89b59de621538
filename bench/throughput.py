"""End-to-end throughput: accept → render → store → claim → sign → deliver → record.

One run on this machine, against Postfix's ``smtp-sink`` (Debian package ``postfix``):

1. start ``smtp-sink -u nobody 127.0.0.1:PORT 1000`` and ``--workers`` worker processes
   (``python -m notifier.worker``) sharing a fresh outbox (SQLite file, or a new schema
   in PostgreSQL);
2. accept N renewal reminders in batches (validate + render + store, one transaction
   per batch) while the workers claim, sign (RSA-2048) and deliver them;
3. stop the clock when the last message is ``sent`` (its recorded ``sent_at``);
4. measure a naive baseline in the same run (half before, half after, so both see the
   same machine): render, ``EmailMessage``, stock ``dkim.sign`` and one
   ``aiosmtplib.send`` connection per message.

Worker memory is sampled (VmRSS) throughout; ``peak_rss_mb`` is the largest worker.
``--preload`` queues all N before the workers start (e.g. ``--n 200000 --preload``
shows worker memory with a deep queue; the figure then excludes worker start-up).

    python bench/throughput.py --n 20000 --database sqlite --json
    NOTIFIER_TEST_DATABASE_URL=postgresql://… python bench/throughput.py --database postgres
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
import threading
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like libraries (bench/dkim.py): never import from it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from notifier import events as catalog  # noqa: E402
from notifier.compose.pipeline import Pipeline  # noqa: E402
from notifier.config import Secret, Settings  # noqa: E402
from notifier.intake.accept import Intake  # noqa: E402
from notifier.intake.preparer import InlinePreparer  # noqa: E402
from notifier.outbox import Outbox, OutboxConfig, open_outbox  # noqa: E402
from notifier.signing.keys import KeyStore  # noqa: E402

BRANDS = ("acme", "kustwebb", "nordname")
LANGS = ("fi", "sv", "en")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        raise SystemExit("smtp-sink not found: apt-get install postfix")
    port = free_port()
    proc = subprocess.Popen(
        [sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(1)
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("smtp-sink did not start")


def event(i: int) -> dict[str, Any]:
    """A nightly renewal reminder: distinct domain per message, mixed brands/languages."""
    spec = catalog.CATALOG["domain.renewal_reminder"]
    return {
        "event": "domain.renewal_reminder",
        "brand": BRANDS[i % len(BRANDS)],
        "recipient": {
            "email": f"holder{i}@customer{i % 997}.example",
            "name": f"Holder {i}",
            "language": LANGS[(i // 3) % len(LANGS)],
        },
        "data": {**spec.sample, "domain": f"bench-{i}.fi", "days_left": 30 if i % 2 else 7},
    }


# --- database ---------------------------------------------------------------------------


class Database:
    """A fresh outbox database for the run; removed afterwards."""

    def __init__(self, kind: str, work: Path, pg_url: str | None) -> None:
        self.kind = kind
        self.schema: str | None = None
        self.base = pg_url
        if kind == "sqlite":
            self.url = f"sqlite:///{work / 'bench.db'}"
            return
        if not pg_url:
            raise SystemExit(
                "--database postgres needs --database-url or NOTIFIER_TEST_DATABASE_URL "
                "(scripts/start-postgres.sh prints one)"
            )
        import psycopg

        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        sep = "&" if "?" in pg_url else "?"
        self.url = f"{pg_url}{sep}options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        if self.schema and self.base:
            import psycopg

            with psycopg.connect(self.base, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


# --- memory sampling -------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pids: list[int], every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (time, largest worker RSS)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            values = [v for v in (rss_mb(p) for p in self.pids) if v is not None]
            if values:
                self.samples.append((time.monotonic(), max(values)))

    @property
    def peak(self) -> float:
        return max((v for _, v in self.samples), default=0.0)


# --- the pipeline --------------------------------------------------------------------------


def spawn_workers(
    count: int, settings: Settings, db_url: str, smtp_url: str, work: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        NOTIFIER_VAR_DIR=str(settings.var_dir),
        NOTIFIER_KEY_DIR=str(settings.keys_path),
        NOTIFIER_SECRET_KEY="bench-secret",
        NOTIFIER_DATABASE_URL=db_url,
        NOTIFIER_SMTP_URL=smtp_url,
        NOTIFIER_WORKER_POLL="0.05",
        PYTHONPATH=str(ROOT),
    )
    env.update(getattr(args, "worker_env", None) or {})  # bench/feedback.py: webhooks
    procs = []
    for n in range(count):
        log = (work / f"worker-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "notifier.worker",
                    "--batch",
                    str(args.claim_batch),
                    "--concurrency",
                    str(args.concurrency),
                ],
                env=env,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
        log.close()
    return procs


def wait_started(work: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = [work / f"worker-{n}.log" for n in range(count)]
        if all(p.exists() and "started" in p.read_text(errors="replace") for p in logs):
            return
        time.sleep(0.05)
    raise SystemExit("workers did not start; see worker-*.log")


def sent_count(box: Outbox) -> int:
    with box.transaction(write=False) as cur:
        row = cur.execute("SELECT COUNT(*) FROM outbox_messages WHERE status = 'sent'").fetchone()
    return int(row[0]) if row else 0


def last_sent_at(box: Outbox) -> float:
    with box.transaction(write=False) as cur:
        row = cur.execute("SELECT MAX(sent_at) FROM outbox_messages").fetchone()
    return float(row[0]) if row and row[0] is not None else time.time()


def run_pipeline(
    args: argparse.Namespace,
    settings: Settings,
    pipeline: Pipeline,
    db: Database,
    port: int,
    work: Path,
) -> dict[str, Any]:
    box = open_outbox(settings, OutboxConfig(), url=db.url)
    intake = Intake(box, InlinePreparer(pipeline))
    smtp_url = f"smtp://127.0.0.1:{port}?pool_size={args.pool_size}"
    raws = [event(i) for i in range(args.n)]
    procs: list[subprocess.Popen[bytes]] = []
    sampler = RssSampler([])
    try:
        start = time.time()
        if args.preload:  # fill the queue first: workers then face all N at once
            for i in range(0, args.n, args.batch):
                intake.accept_batch(raws[i : i + args.batch])
            accepted = time.time()
        procs = spawn_workers(args.workers, settings, db.url, smtp_url, work, args)
        sampler.pids = [p.pid for p in procs]
        wait_started(work, args.workers)
        sampler.start()
        delivering = time.time()
        if not args.preload:
            start = delivering
            for i in range(0, args.n, args.batch):
                intake.accept_batch(raws[i : i + args.batch])
            accepted = time.time()
        deadline = time.monotonic() + max(900.0, args.n / 20)
        while (done := sent_count(box)) < args.n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"only {done}/{args.n} sent; see {work}/worker-*.log")
            time.sleep(0.25)
        end = last_sent_at(box)
        stats = box.stats()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        sampler.halt.set()
        box.close()
    samples = [v for _, v in sampler.samples]
    if args.preload:
        seconds = (accepted - start) + (end - delivering)  # without the worker start-up
    else:
        seconds = end - start
    return {
        "seconds": round(seconds, 2),
        "msgs_per_s": round(args.n / seconds, 1),
        "accept_per_s": round(args.n / (accepted - start), 1),
        "deliver_per_s": round(args.n / (end - delivering), 1),
        "peak_rss_mb": round(sampler.peak, 1),
        "rss_first_mb": round(samples[0], 1) if samples else None,
        "rss_last_mb": round(samples[-1], 1) if samples else None,
        "by_status": stats["by_status"],
    }


# --- the naive baseline ------------------------------------------------------------------------


def run_naive(n: int, pipeline: Pipeline, settings: Settings, port: int) -> float:
    """render + EmailMessage + stock dkim.sign + one aiosmtplib.send connection each."""
    import aiosmtplib
    import dkim

    store = KeyStore(settings.keys_path)
    platform = pipeline.brands.platform
    selector = platform.active_selector()
    assert selector is not None
    key = (store.directory / platform.id / f"{selector.name}.pem").read_bytes()
    events = [pipeline.validate(event(i)) for i in range(n)]

    async def go() -> None:
        for i, ev in enumerate(events):
            rendered = pipeline.renderer.render(ev)
            msg = EmailMessage()
            msg["From"] = f"{platform.display_name} <{platform.from_address}>"
            msg["To"] = ev.recipient.email
            msg["Subject"] = rendered.subject
            msg["Message-ID"] = f"<naive{i}@{platform.mail_domain}>"
            msg.set_content(rendered.text)
            msg.add_alternative(rendered.html, subtype="html")
            data = msg.as_bytes(policy=SMTP_POLICY)
            sig = dkim.sign(
                data,
                selector.name.encode(),
                platform.mail_domain.encode(),
                key,
                include_headers=[b"from", b"to", b"subject", b"message-id"],
            )
            await aiosmtplib.send(
                sig + data,
                sender=f"bounces@{platform.envelope_domain}",
                recipients=[ev.recipient.email],
                hostname="127.0.0.1",
                port=port,
            )

    start = time.perf_counter()
    asyncio.run(go())
    return n / (time.perf_counter() - start)


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=20_000, help="messages (>= 20000 for the report)")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--database-url", default=os.environ.get("NOTIFIER_TEST_DATABASE_URL"))
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="worker processes (default: one per core)",
    )
    ap.add_argument("--batch", type=int, default=500, help="events per accept batch")
    ap.add_argument("--claim-batch", type=int, default=200, help="messages per claim")
    ap.add_argument("--concurrency", type=int, default=16, help="sends in flight per worker")
    ap.add_argument("--pool-size", type=int, default=8, help="SMTP connections per worker")
    ap.add_argument(
        "--naive-n",
        type=int,
        default=400,
        help="messages for the baseline (half before, half after)",
    )
    ap.add_argument(
        "--preload",
        action="store_true",
        help="queue all N before starting the workers (memory with a deep queue)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    settings = Settings(var_dir=work / "var", secret_key=Secret("bench-secret"))
    pipeline = Pipeline(settings)
    store = KeyStore(settings.keys_path)
    for brand in pipeline.brands.all():
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm, bits=2048)
    sink, port = start_sink()
    db = Database(args.database, work, args.database_url)
    try:
        # the naive path runs before and after, so both see the same machine load
        half = max(1, args.naive_n // 2)
        naive_before = run_naive(half, pipeline, settings, port)
        result = run_pipeline(args, settings, pipeline, db, port, work)
        naive_after = run_naive(half, pipeline, settings, port)
        naive = (naive_before + naive_after) / 2
    finally:
        sink.terminate()
        sink.wait(10)
        db.drop()
    shutil.rmtree(work, ignore_errors=True)
    out = {
        "msgs_per_s": result["msgs_per_s"],
        "naive_msgs_per_s": round(naive, 1),
        "ratio": round(result["msgs_per_s"] / naive, 1),
        "peak_rss_mb": result["peak_rss_mb"],
        "database": args.database,
        "n": args.n,
        "workers": args.workers,
        "seconds": result["seconds"],
        "accept_per_s": result["accept_per_s"],
        "deliver_per_s": result["deliver_per_s"],
        "preload": args.preload,
        "rss_first_mb": result["rss_first_mb"],
        "rss_last_mb": result["rss_last_mb"],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"database        {out['database']}  ({args.n} messages, {args.workers} workers, "
        f"{out['cpus']} CPUs)"
    )
    print(
        f"end to end      {out['msgs_per_s']} msg/s  ({out['seconds']} s; accept "
        f"{out['accept_per_s']} msg/s, delivery {out['deliver_per_s']} msg/s"
        f"{', queue preloaded' if args.preload else ''})"
    )
    print(f"naive baseline  {out['naive_msgs_per_s']} msg/s")
    print(f"ratio           {out['ratio']}x")
    print(
        f"worker RSS      peak {out['peak_rss_mb']} MB (first {out['rss_first_mb']}, "
        f"last {out['rss_last_mb']})"
    )


if __name__ == "__main__":
    main()
