"""Event intake over HTTP: notifier vs the framework's ceiling, measured in one run.

Against a running ``notifier serve`` (``--url`` and ``--token``), or one this script
starts on loopback with a fresh database (the default; production settings: uvicorn,
SQLite WAL with synchronous=FULL, so every 202 is a durable commit, and large batches
rendered by one intake process per core). Beside it, a plain FastAPI app under the same
uvicorn settings whose endpoints only parse the body (the ceiling), and — when this
script starts the server — the batch figure again with ``--intake-processes 0`` (all
rendering in the server process). They get the same requests:

* batch: ``--batches`` POSTs of ``--batch-size`` events each, ``--concurrency`` at once
  → events accepted per second;
* single, latency: one event per POST, sent open-loop at a fixed ``--rate`` (default
  300 req/s) for ``--seconds``; latency is measured from each request's scheduled send
  time, so a stall is not hidden by requests that were never sent (coordinated omission);
* single, throughput: ``--connections`` clients posting one event after another for
  ``--seconds`` → single events accepted per second (each a durable commit, shared by
  the events that arrived together: group commit).

Targets (issue 5): batch ≥ 3,000 events/s, single p99 < 50 ms at 300 req/s.

    python bench/intake.py [--json]
    python bench/intake.py --url http://127.0.0.1:8025 --token nt_… [--json]

``--json`` prints one object: ``batch_events_per_s``, ``single_p50_ms``,
``single_p99_ms``, ``ceiling_events_per_s`` (and the rest of the figures, e.g.
``single_events_per_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like packages (bench/dkim.py): keep it off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from notifier import events as catalog  # noqa: E402

EVENT = "domain.renewal_reminder"

CEILING_APP = """
import json
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()

@app.post("/v1/events")
async def one(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"id": 1, "status": "queued", "language": "fi"}, status_code=202)

@app.post("/v1/events/batch")
async def many(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"accepted": len(body["events"]), "duplicates": 0, "errors": 0,
                         "results": [{"index": i, "result": "accepted"}
                                     for i in range(len(body["events"]))]})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def notifier_server(worker: bool, intake_processes: int | None = None) -> Iterator[tuple[str, str]]:
    """``notifier serve`` on loopback with a fresh var dir; yields (url, admin token)."""
    from notifier.api.store import open_store
    from notifier.compose.pipeline import Pipeline
    from notifier.config import Secret, Settings
    from notifier.tokens import TokenStore

    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        settings = Settings(var_dir=Path(tmp) / "var", secret_key=Secret("bench"))
        store = open_store(settings, Pipeline(settings))
        token = TokenStore(store).create(["admin"], label="bench")[1]
        store.outbox.close()  # type: ignore[attr-defined]
        module = "notifier.cli"
        port = _free_port()
        env = {
            **os.environ,
            "NOTIFIER_VAR_DIR": str(settings.var_dir),
            "NOTIFIER_SECRET_KEY": "bench",
            "NOTIFIER_CONFIG": str(Path(tmp) / "none.toml"),
        }
        env.pop("NOTIFIER_DATABASE_URL", None)
        env.pop("NOTIFIER_INTAKE_PROCESSES", None)
        cmd = [
            sys.executable,
            "-m",
            module,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--worker" if worker else "--no-worker",
        ]
        if intake_processes is not None:
            cmd += ["--intake-processes", str(intake_processes)]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, "/readyz")
            yield url, token
        finally:
            _stop(proc)


@contextmanager
def ceiling_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="notifier-ceiling-") as tmp:
        Path(tmp, "ceiling_app.py").write_text(CEILING_APP)
        port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "ceiling_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-server-header",
        ]
        proc = subprocess.Popen(cmd, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, "/docs")
            yield url
        finally:
            _stop(proc)


# --- workloads -----------------------------------------------------------------------------


def _event(run: str, i: int) -> dict[str, Any]:
    return {
        "event": EVENT,
        "brand": ("acme", "kustwebb")[i % 2],
        "recipient": {
            "email": f"user{i}@bench.example.fi",
            "name": "Aino Virtanen",
            "language": ("fi", "sv", "en")[i % 3],
        },
        "data": dict(catalog.CATALOG[EVENT].sample),
        "idempotency_key": f"bench-{run}-{i}",
    }


def batch_bodies(run: str, batches: int, size: int) -> list[bytes]:
    return [
        json.dumps({"events": [_event(run, b * size + i) for i in range(size)]}).encode()
        for b in range(batches)
    ]


async def run_batches(
    url: str, token: str, bodies: list[bytes], concurrency: int, size: int
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0
    failures = 0

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:

        async def worker() -> None:
            nonlocal accepted, failures
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post("/v1/events/batch", content=body)
                if r.status_code == 200:
                    accepted += int(r.json()["accepted"])
                else:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "events_per_s": accepted / elapsed,
        "accepted": accepted,
        "expected": len(bodies) * size,
        "failed_requests": failures,
        "seconds": elapsed,
    }


class _Conn:
    """One keep-alive HTTP/1.1 connection; a few lines of asyncio instead of an HTTP
    client library, so the load generator is not what limits the rate."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


def _target(url: str, token: str) -> tuple[str, int, bytes]:
    """Host, port and the request head up to the Content-Length value."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: "
    ).encode()
    return host, port, head


async def run_single_max(
    url: str, token: str, run: str, connections: int, seconds: float
) -> dict[str, float]:
    """Closed loop: ``connections`` clients each post one event, wait for its reply and
    post the next, for ``seconds`` → single events accepted per second."""
    host, port, head = _target(url, token)
    template = json.dumps(_event(run, 0)).encode()
    key = f"bench-{run}-0".encode()
    loop = asyncio.get_running_loop()
    counter = iter(range(1, 10**9))
    accepted = errors = 0
    deadline = loop.time() + seconds

    async def client() -> None:
        nonlocal accepted, errors
        conn = await _Conn.open(host, port)
        try:
            while loop.time() < deadline:
                # a distinct idempotency key per request (recipient and language repeat)
                body = template.replace(key, f"bench-{run}-{next(counter)}".encode())
                try:
                    status = await conn.post(head, body)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    errors += 1
                    conn.close()
                    conn = await _Conn.open(host, port)
                    continue
                if status in (200, 202):
                    accepted += 1
                else:
                    errors += 1
        finally:
            conn.close()

    start = loop.time()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = loop.time() - start
    return {"events_per_s": accepted / elapsed, "accepted": accepted, "errors": errors}


async def run_single(url: str, token: str, bodies: list[bytes], rate: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate, whatever happened before."""
    host, port, head = _target(url, token)
    idle: list[tuple[_Conn, float]] = []  # (connection, when last used), newest last
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}

    async def post(body: bytes) -> int:
        # uvicorn closes keep-alive connections idle for 5 s: never reuse one idle for
        # 4 s, and retry once on a new connection if a reused one was closed anyway (the
        # body carries an idempotency key, so a retry can never enqueue twice).
        now = asyncio.get_running_loop().time()
        while idle and now - idle[-1][1] > 4.0:
            idle.pop()[0].close()
        for attempt in (1, 2):
            reused = bool(idle) and attempt == 1
            conn = idle.pop()[0] if reused else await _Conn.open(host, port)
            try:
                status = await conn.post(head, body)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                conn.close()
                if reused:
                    continue
                return 0
            idle.append((conn, asyncio.get_running_loop().time()))
            return status
        return 0

    for body in bodies[:20]:  # warm up
        await post(body)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, body: bytes) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        status = await post(body)
        latencies.append((loop.time() - due) * 1000)
        if status not in (200, 202):
            errors += 1
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies[20:])))
    achieved = len(latencies) / (loop.time() - start)
    for conn, _ in idle:
        conn.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]

    return {
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": latencies[-1],
        "mean_ms": statistics.fmean(latencies),
        "requests": len(latencies),
        "errors": errors,
        "error_statuses": {str(k): v for k, v in sorted(statuses.items())},  # 0: no reply
        "achieved_rate": achieved,
    }


def single_bodies(run: str, n: int) -> list[bytes]:
    return [json.dumps(_event(run, i)).encode() for i in range(n)]


async def measure_batches(
    url: str, token: str, args: argparse.Namespace, tag: str
) -> dict[str, float]:
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    warm = batch_bodies(run + "-warm", 1, args.batch_size)
    await run_batches(url, token, warm, 1, args.batch_size)
    return await run_batches(
        url,
        token,
        batch_bodies(run, args.batches, args.batch_size),
        args.concurrency,
        args.batch_size,
    )


async def measure(url: str, token: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    batch = await measure_batches(url, token, args, tag)
    single = await run_single(
        url, token, single_bodies(run + "-s", int(args.rate * args.seconds) + 20), args.rate
    )
    single_max = await run_single_max(url, token, run + "-m", args.connections, args.seconds)
    return {"batch": batch, "single": single, "single_max": single_max}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running notifier serve (default: start one)")
    ap.add_argument("--token", help="an events:write token for --url")
    ap.add_argument(
        "--worker", action="store_true", help="run the delivery worker in the started server too"
    )
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2, help="batches in flight")
    ap.add_argument("--rate", type=float, default=300.0, help="single events per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="single-event run length")
    ap.add_argument(
        "--connections", type=int, default=32, help="clients posting single events back to back"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.url and not args.token:
        ap.error("--url needs --token")

    inline: dict[str, Any] | None = None
    if args.url:
        ours = asyncio.run(measure(args.url.rstrip("/"), args.token, args, "ours"))
    else:
        with notifier_server(args.worker) as (url, token):
            ours = asyncio.run(measure(url, token, args, "ours"))
        with notifier_server(args.worker, intake_processes=0) as (url, token):
            inline = asyncio.run(measure_batches(url, token, args, "inline"))
    with ceiling_server() as url:
        ceiling = asyncio.run(measure(url, "none", args, "ceiling"))

    result = {
        "batch_events_per_s": round(ours["batch"]["events_per_s"], 1),
        "single_p50_ms": round(ours["single"]["p50_ms"], 2),
        "single_p99_ms": round(ours["single"]["p99_ms"], 2),
        "ceiling_events_per_s": round(ceiling["batch"]["events_per_s"], 1),
        "single_events_per_s": round(ours["single_max"]["events_per_s"], 1),
        "ceiling_single_events_per_s": round(ceiling["single_max"]["events_per_s"], 1),
        "batch_inline_events_per_s": round(inline["events_per_s"], 1) if inline else None,
        "ceiling_single_p50_ms": round(ceiling["single"]["p50_ms"], 2),
        "ceiling_single_p99_ms": round(ceiling["single"]["p99_ms"], 2),
        "single_rate": args.rate,
        "single_achieved_rate": round(ours["single"]["achieved_rate"], 1),
        "single_requests": ours["single"]["requests"],
        "single_errors": ours["single"]["errors"],
        "single_error_statuses": ours["single"]["error_statuses"],
        "single_max_ms": round(ours["single"]["max_ms"], 2),
        "single_connections": args.connections,
        "single_max_errors": ours["single_max"]["errors"],
        "batch_accepted": ours["batch"]["accepted"],
        "batch_failed_requests": ours["batch"]["failed_requests"],
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'':28}{'notifier':>12}{'ceiling':>12}")
    print(
        f"{'batch events/s':28}{result['batch_events_per_s']:>12,.0f}"
        f"{result['ceiling_events_per_s']:>12,.0f}   target ≥ 3,000"
    )
    if inline is not None:
        print(
            f"{'  … rendered in-process':28}{result['batch_inline_events_per_s']:>12,.0f}"
            "               (--intake-processes 0)"
        )
    print(
        f"{f'single events/s ({args.connections} conns)':28}"
        f"{result['single_events_per_s']:>12,.0f}{result['ceiling_single_events_per_s']:>12,.0f}"
    )
    print(
        f"{f'single p50 ms @ {args.rate:g}/s':28}{result['single_p50_ms']:>12.2f}"
        f"{result['ceiling_single_p50_ms']:>12.2f}"
    )
    print(
        f"{f'single p99 ms @ {args.rate:g}/s':28}{result['single_p99_ms']:>12.2f}"
        f"{result['ceiling_single_p99_ms']:>12.2f}   target < 50"
    )
    print(
        f"(single: {result['single_requests']} requests, {result['single_errors']} errors, "
        f"achieved {result['single_achieved_rate']}/s; batch: {result['batch_accepted']} "
        f"accepted, {result['batch_failed_requests']} failed requests; {result['cpus']} CPUs)"
    )


if __name__ == "__main__":
    main()
