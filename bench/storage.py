"""Bytes on disk per stored message, and what compressing bodies costs.

Fills a fresh outbox through the real path — accept (render, compose, store) of real
mail of three brands × three languages × several events, then claim, DKIM-sign
(RSA-2048) and record the 250 — and prints bytes per message (SQLite: pages after a
WAL checkpoint; PostgreSQL: the outbox tables with indexes and TOAST), per table, and
the cost of encoding one body (µs, p50/p99) and of training a brand's dictionary.

Rendering is the slow part, so ``--render`` distinct events are rendered and the fill
repeats them with a fresh Message-ID, recipient and domain in the bytes (the bodies stay
as different from each other as real mail is).

    python bench/storage.py --database sqlite --sizes 3000,10000 --json
    NOTIFIER_TEST_DATABASE_URL=postgresql://… python bench/storage.py --database postgres
    python bench/storage.py --code /tmp/base   # the same fill with another tree's code
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Bytes on disk per stored message.")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--sizes", default="3000", help="stored messages, comma-separated")
    p.add_argument("--render", type=int, default=600, help="distinct events rendered")
    p.add_argument("--code", default=str(ROOT), help="the notifier tree to measure")
    p.add_argument("--json", action="store_true")
    return p.parse_args()


ARGS = _args()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, ARGS.code)

from notifier import events as catalog  # noqa: E402
from notifier.compose.pipeline import Pipeline  # noqa: E402
from notifier.config import Secret, Settings  # noqa: E402
from notifier.delivery.transport import AttemptResult  # noqa: E402
from notifier.intake.preparer import new_message  # noqa: E402
from notifier.outbox import OutboxConfig, open_outbox  # noqa: E402
from notifier.outbox.model import Delivery, Status  # noqa: E402
from notifier.signing.dkim import Signer  # noqa: E402
from notifier.signing.keys import KeyStore  # noqa: E402

BRANDS = ("acme", "kustwebb", "nordname")
LANGS = ("fi", "sv", "en")
EVENTS = (
    "domain.renewal_reminder",
    "domain.registered",
    "domain.renewed",
    "domain.expired",
    "domain.auto_renew_failed",
    "domain.transfer_completed",
)
OK = AttemptResult("sent", host="mx.example.fi:25", code=250, enhanced="2.0.0", text="OK queued")


def rendered(pipeline: Pipeline, n: int) -> list[Any]:
    out = []
    names = [e for e in EVENTS if e in catalog.CATALOG]
    for i in range(n):
        name = names[i % len(names)]
        raw = {
            "event": name,
            "brand": BRANDS[i % 3],
            "recipient": {
                "email": f"holder{i}@customer{i % 97}.example",
                "name": f"Holder {i}",
                "language": LANGS[(i // 3) % 3],
            },
            "data": {**catalog.CATALOG[name].sample, "domain": f"bench-{i}.fi"},
        }
        try:
            out.append(new_message(pipeline.prepare(raw)))
        except Exception:  # an event whose sample needs more: skip it
            continue
    return out


def fresh(m: Any, k: int) -> Any:
    """Another message like ``m``: its own Message-ID, recipient and domain."""
    old_id = m.message_id.strip("<>").split("@")[0]
    new_id = uuid.uuid4().hex
    data = m.data.replace(old_id.encode(), new_id.encode())
    data = data.replace(b"bench-", f"b{k}-".encode())
    from dataclasses import replace

    return replace(
        m,
        message_id=m.message_id.replace(old_id, new_id),
        data=data,
        data_sha256=hashlib.sha256(data).hexdigest(),
        recipient=f"r{k}-{m.recipient}",
        rcpt_to=f"r{k}-{m.rcpt_to}",
        domain=f"b{k}-{m.domain}",
        idempotency_key=None,
        dedupe_key=None,
    )


def size(box: Any) -> tuple[int, dict[str, int]]:
    tables: dict[str, int] = {}
    with box.transaction(write=False) as cur:
        if box.kind == "sqlite":
            page = int(cur.execute("PRAGMA page_size").fetchone()[0])
            try:
                for name, pages in cur.execute(
                    "SELECT name, COUNT(*) FROM dbstat GROUP BY name"
                ).fetchall():
                    tables[str(name)] = int(pages) * page
            except Exception:  # SQLite built without dbstat
                pass
            total = int(cur.execute("PRAGMA page_count").fetchone()[0]) * page
            return total, tables
        for (name,) in cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall():
            row = cur.execute("SELECT pg_total_relation_size(to_regclass(?))", [name]).fetchone()
            tables[str(name)] = int(row[0])
    return sum(tables.values()), tables


def run(target: int, pool: list[Any], settings: Settings, url: str) -> dict[str, Any]:
    box = open_outbox(settings, OutboxConfig(), url=url)
    signer = Signer(KeyStore(settings.key_dir))
    stored = 0
    encode_us: list[float] = []
    store_s = 0.0
    k = 0
    while stored < target:
        batch = [fresh(pool[(k + i) % len(pool)], k + i) for i in range(min(100, target - stored))]
        k += len(batch)
        if hasattr(box, "encode_body"):
            for m in batch[:20]:
                t = time.perf_counter()
                box.encode_body(m.brand, m.data)
                encode_us.append((time.perf_counter() - t) * 1e6)
        t = time.perf_counter()
        box.store(batch)
        store_s += time.perf_counter() - t
        stored += len(batch)
        claims = box.claim("bench", len(batch))
        deliveries = []
        for c in claims:
            signed = signer.sign(c.data, PIPELINE.brands.get(c.sign_brand))
            head = signed[: len(signed) - len(c.data)]
            deliveries.append(
                Delivery(
                    c.id,
                    Status.SENT,
                    attempt=OK,
                    signed_head=head,
                    sent_sha256=hashlib.sha256(signed).hexdigest(),
                    dkim_domain="x",
                    dkim_selector="y",
                    rcpt_to=c.rcpt_to,
                    brand=c.brand,
                )
            )
        box.complete("bench", deliveries)
    if hasattr(box, "wait_for_training"):
        box.wait_for_training()
    train_ms = []
    if hasattr(box, "train_body_dictionary"):
        for brand in BRANDS:
            t = time.perf_counter()
            box.train_body_dictionary(brand)
            train_ms.append((time.perf_counter() - t) * 1e3)
    if box.kind == "sqlite":
        box._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total, tables = size(box)
    box.close()
    per = {t: round(b / stored) for t, b in sorted(tables.items(), key=lambda x: -x[1])[:10]}
    out: dict[str, Any] = {
        "messages": stored,
        "bytes_per_message": round(total / stored),
        "by_table": per,
        "store_ms_per_message": round(store_s * 1e3 / stored, 3),
    }
    if encode_us:
        encode_us.sort()
        out["encode_us"] = {
            "p50": round(statistics.median(encode_us), 1),
            "p99": round(encode_us[int(len(encode_us) * 0.99)], 1),
        }
    if train_ms:
        out["train_ms_per_brand"] = round(statistics.mean(train_ms), 1)
    return out


def main() -> None:
    global PIPELINE
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    settings = Settings(var_dir=work, key_dir=work / "keys", secret_key=Secret("bench"))
    PIPELINE = Pipeline(settings)
    store = KeyStore(settings.key_dir)
    for brand in PIPELINE.brands.all():
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm)
    pool = rendered(PIPELINE, ARGS.render)
    results: dict[str, Any] = {
        "database": ARGS.database,
        "code": ARGS.code,
        "raw_body_bytes": round(statistics.mean(len(m.data) for m in pool)),
        "sizes": {},
    }
    for target in (int(s) for s in ARGS.sizes.split(",")):
        if ARGS.database == "sqlite":
            url = f"sqlite:///{work / f'fill-{target}.db'}"
            results["sizes"][str(target)] = run(target, pool, settings, url)
            continue
        import psycopg

        base = os.environ["NOTIFIER_TEST_DATABASE_URL"]
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in base else "?"
        try:
            url = f"{base}{sep}options=-csearch_path%3D{schema}"
            results["sizes"][str(target)] = run(target, pool, settings, url)
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if ARGS.json:
        print(json.dumps(results))
        return
    print(f"{ARGS.database}: raw body {results['raw_body_bytes']} B ({ARGS.code})")
    for n, r in results["sizes"].items():
        print(f"  {n:>7} messages: {r['bytes_per_message']} B/message  {r}")


PIPELINE: Pipeline
if __name__ == "__main__":
    main()
