"""History at scale: does each everyday operation cost the same at 10k and at 10M stored
messages? (issue 13)

Fills a fresh outbox (SQLite file, or a new PostgreSQL schema) with realistic rows, in
steps up to each size of ``--sizes``, and times every operation at each size:

- rows: bodies are real rendered mail (every catalog event, brand and language through
  the compose pipeline) with the Message-ID, recipient and domain varied, ~9.7 kB;
  88 % sent, 4 % failed, 3 % deferred (retry due later), 5 % queued (at most 100k),
  attempts as a worker records them (the sent ones with their DKIM header), and
  suppression lists of 1 % of the size (at most 100k). They go in with bulk SQL, not
  the accept path, but each body through ``Outbox.encode_bodies`` and
  ``_insert_bodies``: whatever the
  store does to a body (compression) is what is measured;
- operations (median of ``--repeat`` runs after a warm-up; those that change rows put
  them back or use fresh ones, so repeats are alike): ``claim_100``, ``complete_100``,
  ``accept_batch_1000`` (storing a prepared batch), ``get_one``, ``search_recipient``,
  ``search_domain``, ``search_brand_status`` (acme, sent), ``search_event_status``
  (renewal reminders, sent: a full page at every size), ``search_deep_page``
  (brand+status, from the middle of the history by cursor), ``metrics`` (what
  ``/metrics`` reads), ``queue_stats``, ``open_outbox`` (what every CLI call, worker
  and server start does);
- ``bytes_per_message``: the database's size on disk over the stored messages.

    python bench/scale.py --database sqlite --sizes 10000,1000000 --json
    NOTIFIER_TEST_DATABASE_URL=postgresql://… python bench/scale.py --database postgres

A 9.7 kB body makes 1M messages ~10 GB on SQLite: watch the disk (``--dir``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like libraries (bench/dkim.py): never import from it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from notifier import events as catalog  # noqa: E402
from notifier.compose.pipeline import Pipeline  # noqa: E402
from notifier.config import Secret, Settings  # noqa: E402
from notifier.delivery.transport import AttemptResult  # noqa: E402
from notifier.intake.preparer import new_message  # noqa: E402
from notifier.outbox import Outbox, open_outbox, tallies  # noqa: E402
from notifier.outbox.model import DAY, Delivery, NewMessage, Status  # noqa: E402

BRANDS = ("acme", "kustwebb", "nordname")
LANGS = ("fi", "sv", "en")
OPS = (
    "claim_100",
    "complete_100",
    "accept_batch_1000",
    "get_one",
    "search_recipient",
    "search_domain",
    "search_brand_status",
    "search_event_status",
    "search_deep_page",
    "metrics",
    "queue_stats",
    "open_outbox",
)
QUEUED_MAX = 100_000
SUPPRESSED_MAX = 100_000
CHUNK = 5000
#: what a worker stores for a signed attempt: the DKIM-Signature header it prepended
DKIM_HEAD = (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.example; s=n2026;\r\n"
    b" t=1767225600; h=from:to:subject:date:message-id:mime-version:content-type;\r\n"
    b" bh=" + b"A" * 44 + b";\r\n b=" + b"B" * 344 + b"\r\n"
)


# --- the rows ----------------------------------------------------------------------------


class Templates:
    """Real rendered messages, one per (event, brand, language), with the parts that
    differ between messages marked for replacement."""

    def __init__(self, settings: Settings) -> None:
        pipeline = Pipeline(settings)
        self.items: list[NewMessage] = []
        for name, spec in catalog.CATALOG.items():
            for b, brand in enumerate(BRANDS):
                for lang in LANGS:
                    raw = {
                        "event": name,
                        "brand": brand,
                        "recipient": {"email": "holder@customer.example", "language": lang},
                        "data": dict(spec.sample),
                    }
                    try:
                        self.items.append(new_message(pipeline.prepare(raw)))
                    except Exception:  # a brand without this event: skip the pair
                        if b == 0 and lang == LANGS[0]:
                            raise
        self.average = sum(len(t.data) for t in self.items) / len(self.items)

    def pick(self, i: int) -> NewMessage:
        return self.items[(i * 7919) % len(self.items)]


def recipient(i: int) -> str:
    return f"holder{i // 8}@customer{i % 997}.example"


def domain_of(i: int) -> str:
    return f"name-{i // 6}.fi"


def message_parts(t: NewMessage, i: int, tag: str) -> tuple[str, str, bytes]:
    message_id = f"<{tag}.{i}@{t.message_id.rsplit('@', 1)[-1]}"
    rcpt = recipient(i)
    data = t.data.replace(t.message_id.encode(), message_id.encode())
    data = data.replace(b"holder@customer.example", rcpt.encode())
    if t.domain:
        data = data.replace(t.domain.encode(), domain_of(i).encode())
    return message_id, rcpt, data


def status_of(i: int, queued: int, queued_max: int) -> str:
    r = (i * 2654435761) % 100
    if r < 88:
        return "sent"
    if r < 92:
        return "failed"
    if r < 95:
        return "deferred"
    return "queued" if queued < queued_max else "sent"


_MESSAGE_COLUMNS = (
    "id, brand, sender_brand, sign_brand, event, mandatory, domain, recipient, language, "
    "request_hash, message_id, mail_from, rcpt_to, data_sha256, status, reason, attempts, "
    "created_at, updated_at, next_attempt_at, deadline, sent_at, dkim_domain, dkim_selector, "
    "sent_sha256"
)


def fill(box: Outbox, templates: Templates, size: int, now: float) -> None:
    """Messages up to ``size`` stored, bulk SQL per chunk (ids after the largest)."""
    overriding = " OVERRIDING SYSTEM VALUE" if box.kind == "postgres" else ""
    insert = (
        f"INSERT INTO outbox_messages ({_MESSAGE_COLUMNS}){overriding} VALUES "
        f"({', '.join(['?'] * 25)})"
    )
    with box.transaction(write=False) as cur:
        row = cur.execute("SELECT COUNT(*) FROM outbox_messages WHERE status = 'queued'").fetchone()
        queued = int(row[0]) if row else 0
        row = cur.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM outbox_messages").fetchone()
        count, start = (int(row[0]), int(row[1])) if row else (0, 0)
    stop = start + max(0, size - count)
    # a small first chunk: a brand's dictionary is trained after its first bodies, as
    # the intake does, not after the first 5,000 messages
    edges = sorted({start, *range(start + 1000 if start == 0 else start, stop, CHUNK), stop})
    for lo, hi in itertools.pairwise(edges):
        messages, bodies, attempts = [], [], []
        counts: Counter[tuple[str, str, str]] = Counter()
        for i in range(lo, hi):
            t = templates.pick(i)
            message_id, rcpt, data = message_parts(t, i, "fill")
            status = status_of(i, queued, QUEUED_MAX)
            queued += status == "queued"
            digest = hashlib.sha256(data).hexdigest()
            if status in ("queued", "deferred"):
                created = now - (3600.0 if status == "queued" else 3 * DAY) * ((i % 1000) / 1000)
            else:
                created = now - 730 * DAY * (1 - (i % 100_000) / 100_000)
            updated = created + 2.0
            sent = status == "sent"
            # deferred: due a day or more after the fill began, so that a fill that takes
            # most of an hour (10M) measures the same backlog as a short one
            nxt = created if status == "queued" else now + DAY + i % 7200
            messages.append(
                (
                    i + 1,
                    t.brand,
                    t.sender_brand,
                    t.sign_brand,
                    t.event,
                    t.mandatory,
                    domain_of(i) if t.domain else None,
                    rcpt,
                    t.language,
                    t.request_hash,
                    message_id,
                    t.mail_from,
                    rcpt,
                    digest,
                    status,
                    "550 5.1.1 no such user" if status == "failed" else None,
                    0 if status == "queued" else 1,
                    created,
                    updated if status != "queued" else created,
                    nxt if status in ("queued", "deferred") else None,
                    created + 4 * DAY,
                    updated if sent else None,
                    t.sign_brand + ".example" if sent else None,
                    "n2026" if sent else None,
                    hashlib.sha256(DKIM_HEAD + data).hexdigest() if sent else None,
                )
            )
            bodies.append((i + 1, t.brand, data))
            counts[(t.brand, t.event, "accepted")] += 1
            if status in ("sent", "failed"):
                counts[(t.brand, t.event, status)] += 1
            if status != "queued":
                code, enhanced, text, outcome = {
                    "sent": (250, "2.0.0", "2.0.0 Ok: queued as 4dG7hK2", "sent"),
                    "failed": (550, "5.1.1", "5.1.1 <x>: Recipient address rejected", "permanent"),
                    "deferred": (451, "4.7.1", "4.7.1 Greylisted, try again later", "transient"),
                }[status]
                attempts.append(
                    (
                        i + 1,
                        updated,
                        "bench",
                        outcome,
                        "mx.customer.example",
                        code,
                        enhanced,
                        text,
                        False,
                        messages[-1][-1],
                        DKIM_HEAD if sent else None,
                    )
                )
        # compressed as the intake does (the brand's newest dictionary), outside the write
        stored = box.encode_bodies(None, [(brand, data) for _, brand, data in bodies])
        with box.transaction(durable=False) as cur:
            cur.many(insert, messages)
            rows = [(i, b, e) for (i, b, _), e in zip(bodies, stored, strict=True)]
            box._insert_bodies(cur, rows)
            cur.many(
                "INSERT INTO outbox_attempts (message, at, worker, outcome, host, code, "
                "enhanced, text, possible_duplicate, sha256, signed_head) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempts,
            )
            box._count(cur, dict(counts))
        # dictionaries are trained as the intake trains them (after 64, 256, 1,000
        # bodies of a brand, then every 100,000), here before the next chunk
        box._maybe_train()
        box.wait_for_training()
    suppressions_to(box, min(SUPPRESSED_MAX, size // 100), now)
    if box.kind == "postgres":
        with box.transaction() as cur:
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('outbox_messages', 'id'), "
                "(SELECT MAX(id) FROM outbox_messages))"
            )


def suppressions_to(box: Outbox, total: int, now: float) -> None:
    with box.transaction(write=False) as cur:
        row = cur.execute("SELECT COUNT(*) FROM outbox_suppressions").fetchone()
    have = int(row[0]) if row else 0
    rows = [
        (
            BRANDS[k % 3],
            f"gone{k}@customer{k % 997}.example",
            "no such user",
            550,
            "5.1.1",
            None,
            now,
        )
        for k in range(have, total)
    ]
    for lo in range(0, len(rows), CHUNK):
        with box.transaction(durable=False) as cur:
            box._add_suppressions(cur, rows[lo : lo + CHUNK])


def settle(box: Outbox) -> None:
    """What a running database does by itself: PostgreSQL's autovacuum (statistics,
    visibility map), SQLite's checkpoint; and the gigabytes the fill left dirty in the
    page cache written out, so the durable commits measured do not queue behind them."""
    if box.kind == "postgres":
        # the bulk fill logged one tally delta per row: fold them in (a scrape does)
        # before the vacuum that a running database's autovacuum would do after it
        tallies.compact(box)
        conn = box._conn()
        conn.commit()
        conn.autocommit = True
        try:
            conn.execute("VACUUM ANALYZE")
        finally:
            conn.autocommit = False
    else:
        box._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    os.sync()


def disk_bytes(box: Outbox, path: Path | None) -> int:
    if path is not None:
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with box.transaction(write=False) as cur:
        row = cur.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row and row[0] else 0


# --- the operations ----------------------------------------------------------------------


def median_ms(
    run: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None
) -> float:
    times = []
    for n in range(repeat + 1):
        if before is not None:
            before()
        t0 = time.perf_counter()
        run()
        if n:  # the first run warms caches and plans
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def measure(
    box: Outbox, settings: Settings, url: str, templates: Templates, size: int, repeat: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    held: list[int] = []

    def claim() -> None:
        held[:] = [c.id for c in box.claim("bench", 100)]

    def give_back() -> None:
        if held:
            box.release("bench", held)

    # the claim alone; giving the messages back is untimed
    times = []
    for n in range(repeat + 1):
        t0 = time.perf_counter()
        claim()
        if n:
            times.append((time.perf_counter() - t0) * 1000)
        give_back()
    out["claim_100"] = round(statistics.median(times), 3)

    def complete() -> None:
        at = AttemptResult("sent", "mx.customer.example", 250, "2.0.0", "2.0.0 Ok")
        box.complete(
            "bench",
            [
                Delivery(
                    id=i,
                    status=Status.SENT,
                    attempt=at,
                    signed_head=DKIM_HEAD,
                    sent_sha256="0" * 64,
                    dkim_domain="acme.example",
                    dkim_selector="n2026",
                )
                for i in held
            ],
        )

    times = []
    for n in range(repeat + 1):
        claim()
        t0 = time.perf_counter()
        complete()
        if n:
            times.append((time.perf_counter() - t0) * 1000)
        marks = ", ".join("?" for _ in held)
        with box.transaction() as cur:  # back in the queue, as they were
            cur.execute(
                "UPDATE outbox_messages SET status = 'queued', sent_at = NULL, attempts = 0, "
                "next_attempt_at = created_at, dkim_domain = NULL, dkim_selector = NULL, "
                f"sent_sha256 = NULL WHERE id IN ({marks})",
                held,
            )
    out["complete_100"] = round(statistics.median(times), 3)

    batch_no = [0]

    def batch() -> list[NewMessage]:
        batch_no[0] += 1
        items = []
        for k in range(1000):
            i = size * 3 + batch_no[0] * 1000 + k
            t = templates.pick(i)
            message_id, rcpt, data = message_parts(t, i, f"acc{uuid.uuid4().hex[:8]}")
            items.append(_replace(t, message_id, rcpt, data))
        return items

    pending: list[list[NewMessage]] = []
    out["accept_batch_1000"] = median_ms(
        lambda: box.store(pending.pop()), repeat, before=lambda: pending.append(batch())
    )
    probe = [size // 3 + 1]

    def get_one() -> None:
        probe[0] = (probe[0] * 48271) % size + 1
        box.get(probe[0])

    out["get_one"] = median_ms(get_one, repeat)
    who = recipient(size // 2)
    out["search_recipient"] = median_ms(lambda: box.search(recipient=who, limit=51), repeat)
    name = domain_of(size // 2)
    out["search_domain"] = median_ms(lambda: box.search(domain=name, limit=51), repeat)
    out["search_brand_status"] = median_ms(
        lambda: box.search(brand="acme", status="sent", limit=51), repeat
    )
    out["search_event_status"] = median_ms(
        lambda: box.search(event="domain.renewal_reminder", status="sent", limit=51), repeat
    )
    out["search_deep_page"] = median_ms(
        lambda: box.search(brand="acme", status="sent", before=size // 2, limit=51), repeat
    )
    out["metrics"] = median_ms(lambda: (box.metrics(), box.brand_dns_metrics()), repeat)
    out["queue_stats"] = median_ms(box.stats, repeat)
    out["open_outbox"] = median_ms(lambda: open_outbox(settings, url=url).close(), repeat)
    return out


def _replace(t: NewMessage, message_id: str, rcpt: str, data: bytes) -> NewMessage:
    return dataclasses.replace(
        t,
        message_id=message_id,
        recipient=rcpt,
        rcpt_to=rcpt,
        data=data,
        data_sha256=hashlib.sha256(data).hexdigest(),
        dedupe_key=None,
        idempotency_key=None,
        cancels=(),
    )


# --- the run -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=os.environ.get("NOTIFIER_TEST_DATABASE_URL"))
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="notifier-scale-", dir=args.dir))
    settings = Settings(var_dir=work / "var", secret_key=Secret("bench-secret"))
    schema = None
    path: Path | None = None
    if args.database == "sqlite":
        path = work / "scale.db"
        url = f"sqlite:///{path}"
    else:
        if not args.database_url:
            raise SystemExit(
                "--database postgres needs --database-url or NOTIFIER_TEST_DATABASE_URL "
                "(scripts/start-postgres.sh prints one)"
            )
        import psycopg

        schema = f"scale_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in args.database_url else "?"
        url = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    templates = Templates(settings)
    result: dict[str, Any] = {
        "database": args.database,
        "sizes": sizes,
        "ops": {op: {} for op in OPS},
        "bytes_per_message": {},
        "body_bytes_average": round(templates.average),
        "fill_seconds": {},
        "disk_bytes": {},
    }
    now = time.time()
    try:
        box = open_outbox(settings, url=url)
        for size in sizes:
            t0 = time.monotonic()
            fill(box, templates, size, now)
            settle(box)
            result["fill_seconds"][str(size)] = round(time.monotonic() - t0, 1)
            with box.transaction(write=False) as cur:
                row = cur.execute("SELECT COUNT(*) FROM outbox_messages").fetchone()
            stored = int(row[0]) if row else size
            disk = disk_bytes(box, path)
            result["disk_bytes"][str(size)] = disk
            result["bytes_per_message"][str(size)] = round(disk / stored)
            for op, ms in measure(box, settings, url, templates, size, args.repeat).items():
                result["ops"][op][str(size)] = ms
            if not args.json:
                print(f"{size}: filled in {result['fill_seconds'][str(size)]} s", file=sys.stderr)
        box.close()
    finally:
        if not args.keep:
            if schema and args.database_url:
                import psycopg

                with psycopg.connect(args.database_url, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    head = " | ".join(f"{s:>10}" for s in sizes)
    print(f"{'operation':<22} | {head} | ratio (ms)")
    for op in OPS:
        values = [result["ops"][op][str(s)] for s in sizes]
        ratio = values[-1] / values[0] if values[0] else float("inf")
        print(f"{op:<22} | " + " | ".join(f"{v:>10.2f}" for v in values) + f" | {ratio:.2f}x")
    values = [result["bytes_per_message"][str(s)] for s in sizes]
    print(f"{'bytes_per_message':<22} | " + " | ".join(f"{v:>10}" for v in values))


if __name__ == "__main__":
    main()
