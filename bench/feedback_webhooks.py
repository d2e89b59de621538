"""Closing-the-loop figures, one function per figure (more keys can be added alike).

* ``webhooks_per_s``: status events already in the outbox, one endpoint subscribed to
  all of them, a receiver on loopback (its own process: a minimal asyncio HTTP server
  answering 204); the dispatcher the workers run, timed until every delivery is
  recorded as delivered.
* ``throughput_with_webhooks_msgs_per_s`` / ``throughput_without_webhooks_msgs_per_s``:
  ``bench/throughput.py``'s end-to-end run (accept → … → sent, worker processes,
  Postfix's smtp-sink) on a fresh database without any endpoint, then with one endpoint
  subscribed to every event (the workers deliver those webhooks meanwhile);
  ``webhook_overhead`` is the fraction lost (target ≤ 0.15). A run with webhooks is
  timed until the last webhook is delivered as well as the last message sent; the
  runs alternate without/with/with/without (``--rounds``) and their means are
  reported, so that a machine whose load drifts favours neither.

    python bench/feedback_webhooks.py --json [--n 5000] [--webhooks 5000] [--database postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from notifier.config import Secret, Settings  # noqa: E402
from notifier.feedback import endpoints  # noqa: E402
from notifier.feedback.dispatcher import DispatchConfig, Dispatcher  # noqa: E402
from notifier.outbox import open_outbox  # noqa: E402
from notifier.outbox.events import StatusEvent  # noqa: E402

SECRET = "bench-secret"


def _throughput_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_throughput", ROOT / "bench" / "throughput.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the receiver (a process of its own) ---------------------------------------------------


async def _serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def start_receiver() -> tuple[subprocess.Popen[bytes], int]:
    port = _throughput_module().free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the receiver did not start")


# --- figures -----------------------------------------------------------------------------


def webhooks_per_s(args: argparse.Namespace, work: Path, receiver_url: str) -> dict[str, Any]:
    tp = _throughput_module()
    db = tp.Database(args.database, work / "hooks", args.database_url)
    (work / "hooks").mkdir(exist_ok=True)
    settings = Settings(var_dir=work / "var", secret_key=Secret(SECRET), database_url=db.url)
    try:
        with open_outbox(settings) as box:
            endpoints.add(
                box,
                settings.secret(),
                url=receiver_url,
                events="*",
                brand=None,
                known_brands=[],
                allow_private=True,
            )
            for start in range(0, args.webhooks, 500):
                events = [
                    StatusEvent("message.sent", "acme", {"id": i, "recipient": f"r{i}@example.fi"})
                    for i in range(start, min(args.webhooks, start + 500))
                ]
                with box.transaction() as cur:
                    box._emit(cur, events, box.clock())
            config = DispatchConfig(allow_private=True, poll=0.01)
            dispatcher = Dispatcher(box, settings.secret(), config)
            began = time.perf_counter()
            stats = asyncio.run(dispatcher.run(until_idle=True))
            seconds = time.perf_counter() - began
    finally:
        db.drop()
    if stats.delivered != args.webhooks:
        raise SystemExit(f"only {stats.delivered}/{args.webhooks} webhooks delivered")
    return {"webhooks_per_s": round(args.webhooks / seconds, 1), "webhooks": args.webhooks}


def _webhooks_done(tp: Any) -> None:
    """Make ``tp``'s run end when every message is sent AND every webhook delivered (a
    dispatcher that falls behind must not flatter the figure), at the later of both."""
    sent_count, last_sent_at = tp.sent_count, tp.last_sent_at

    def undelivered(box: Any) -> int:
        with box.transaction(write=False) as cur:
            row = cur.execute(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'"
            ).fetchone()
        return int(row[0]) if row else 0

    def done(box: Any) -> int:
        sent = int(sent_count(box))
        return sent - 1 if sent and undelivered(box) else sent

    def last(box: Any) -> float:
        with box.transaction(write=False) as cur:
            row = cur.execute("SELECT MAX(delivered_at) FROM webhook_deliveries").fetchone()
        delivered = float(row[0]) if row and row[0] is not None else 0.0
        return max(float(last_sent_at(box)), delivered)

    tp.sent_count, tp.last_sent_at = done, last


def throughput(
    args: argparse.Namespace, work: Path, receiver_url: str | None, round_: int = 0
) -> float:
    """One bench/throughput.py run; with ``receiver_url``, one endpoint for every event
    (timed until the last webhook is delivered too)."""
    tp = _throughput_module()
    sub = work / f"{'with' if receiver_url else 'without'}-{round_}"
    sub.mkdir()
    if receiver_url:
        _webhooks_done(tp)
    settings = Settings(var_dir=work / "var", secret_key=Secret(SECRET))
    db = tp.Database(args.database, sub, args.database_url)
    run = argparse.Namespace(
        n=args.n,
        batch=500,
        claim_batch=200,
        concurrency=16,
        pool_size=8,
        preload=False,
        workers=args.workers,
        worker_env={"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "1"} if receiver_url else {},
    )
    try:
        if receiver_url:
            with open_outbox(settings, url=db.url) as box:
                endpoints.add(
                    box,
                    settings.secret(),
                    url=receiver_url,
                    events="*",
                    brand=None,
                    known_brands=[],
                    allow_private=True,
                )
        from notifier.compose.pipeline import Pipeline

        result = tp.run_pipeline(run, settings, Pipeline(settings), db, args.sink_port, sub)
        if receiver_url:
            with open_outbox(settings, url=db.url) as box, box.transaction(write=False) as cur:
                row = cur.execute(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'"
                ).fetchone()
            if not row or int(row[0]) < args.n:
                raise SystemExit(f"only {row and row[0]} webhooks delivered for {args.n} sent")
    finally:
        db.drop()
    return float(result["msgs_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=5000, help="messages per throughput run")
    ap.add_argument("--webhooks", type=int, default=5000, help="webhooks for webhooks_per_s")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--database-url", default=os.environ.get("NOTIFIER_TEST_DATABASE_URL"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="without/with pairs, alternated ABBA (the machine may be noisy); means reported",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.receiver:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(_serve(args.receiver))
        return
    tp = _throughput_module()
    work = Path(tempfile.mkdtemp(prefix="notifier-bench-feedback-"))
    settings = Settings(var_dir=work / "var", secret_key=Secret(SECRET))
    from notifier.compose.pipeline import Pipeline
    from notifier.signing.keys import KeyStore

    store = KeyStore(settings.keys_path)
    for brand in Pipeline(settings).brands.all():
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm, bits=2048)
    receiver, port = start_receiver()
    sink, args.sink_port = tp.start_sink()
    url = f"http://127.0.0.1:{port}/hooks"
    try:
        out: dict[str, Any] = {}
        out.update(webhooks_per_s(args, work, url))
        runs: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            for hooked in order:
                runs[hooked].append(throughput(args, work, url if hooked else None, i))
        without = round(sum(runs[False]) / len(runs[False]), 1)
        with_hooks = round(sum(runs[True]) / len(runs[True]), 1)
        out["throughput_without_webhooks_msgs_per_s"] = without
        out["throughput_with_webhooks_msgs_per_s"] = with_hooks
        out["webhook_overhead"] = round(1 - with_hooks / without, 3)
        out["throughput_runs"] = {"without": runs[False], "with": runs[True]}
        out.update(database=args.database, n=args.n, workers=args.workers, cpus=os.cpu_count())
    finally:
        receiver.terminate()
        sink.terminate()
        receiver.wait(10)
        sink.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:<42} {value}")


if __name__ == "__main__":
    main()
