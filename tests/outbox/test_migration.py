"""A database made by the previous release (53d466c: before the search indexes,
tallies and compressed bodies of issue 13) opens with this code.

Its schema and rows are in ``data/outbox-53d466c.json`` (the schema lists that
release's ``init_schema`` ran on each backend, and a SQLite database it filled). Two
tests open it: with its own mail (bodies read back with their SHA-256, queued mail
sent as accepted, new mail stored compressed beside the old), and with rows of every
state and age (the new indexes, tallies and triggers are added, the stored rows are
counted once, and found through the new indexes)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.config import Secret, Settings
from notifier.outbox import Outbox, OutboxConfig, open_outbox
from notifier.outbox.model import DAY, Delivery, Status
from tests.conftest import postgres_schema
from tests.test_outbox import OK

LEGACY = json.loads((Path(__file__).parent / "data" / "outbox-53d466c.json").read_text())
T0 = 1_700_000_000.0  # when the legacy messages were made


def _value(v: Any) -> Any:
    return base64.b64decode(v["b64"]) if isinstance(v, dict) else v


def _make_sqlite(path: Path, tables: tuple[str, ...] | None = None) -> None:
    with sqlite3.connect(path) as db:  # main's connection set-up: no auto_vacuum pragma
        db.execute("PRAGMA journal_mode = WAL")
        for statement in LEGACY["schema"]["sqlite"]:
            db.execute(statement)
        for table, dump in _tables(tables):
            marks = ", ".join("?" for _ in dump["columns"])
            db.execute(f"DELETE FROM {table}")  # the schema's own rows (meta, backfill)
            db.executemany(
                f"INSERT INTO {table} ({', '.join(dump['columns'])}) VALUES ({marks})",
                [[_value(v) for v in row] for row in dump["rows"]],
            )
    db.close()


def _make_postgres(url: str, tables: tuple[str, ...] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        for statement in LEGACY["schema"]["postgres"]:
            db.execute(statement)
        for table, dump in sorted(_tables(tables), key=_parents_first):
            described = db.execute(
                "SELECT column_name, data_type, is_identity FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema()",
                [table],
            ).fetchall()
            kinds = {name: kind for name, kind, _ in described}
            identity = [name for name, _, ident in described if ident == "YES"]
            columns = dump["columns"]
            rows = [
                [
                    bool(v) if kinds[c] == "boolean" and v is not None else _value(v)
                    for c, v in zip(columns, row, strict=True)
                ]
                for row in dump["rows"]
            ]
            marks = ", ".join("%s" for _ in columns)
            db.execute(f"DELETE FROM {table}")
            with db.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE "
                    f"VALUES ({marks})",
                    rows,
                )
            if identity == ["id"]:
                top = max(int(r[columns.index("id")]) for r in rows)
                db.execute(f"ALTER TABLE {table} ALTER COLUMN id RESTART WITH {top + 1}")


def _tables(only: tuple[str, ...] | None) -> list[tuple[str, Any]]:
    """The dump's tables (all, or those named): the schema's own rows, the fingerprint
    among them, and the release's mail."""
    return [(t, d) for t, d in LEGACY["tables"].items() if only is None or t in only]


def _parents_first(item: tuple[str, Any]) -> int:
    return {"outbox_messages": 0, "webhook_endpoints": 1}.get(item[0], 2)


@pytest.fixture(params=["sqlite", "postgres"])
def legacy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "old.db"
        _make_sqlite(path)
        yield f"sqlite:///{path}"
        return
    with postgres_schema("mig") as url:
        _make_postgres(url)
        yield url


def test_an_outbox_of_the_previous_release_migrates(legacy_url: str, tmp_path: Path) -> None:
    messages = LEGACY["tables"]["outbox_messages"]
    cols = messages["columns"]
    rows = {int(r[0]): dict(zip(cols, r, strict=True)) for r in messages["rows"]}
    bodies = {int(m): _value(d) for m, d in LEGACY["tables"]["outbox_bodies"]["rows"]}
    settings = Settings(var_dir=tmp_path / "var", secret_key=Secret("test-secret"))
    clock = [T0 + 3600]
    with open_outbox(settings, OutboxConfig(), url=legacy_url, clock=lambda: clock[0]) as box:
        for i, row in rows.items():
            raw = box.raw(i)  # checked against the recorded SHA-256
            if row["status"] in ("sent", "failed"):
                assert raw.signed and raw.sha256 == row["sent_sha256"]
                assert raw.data.endswith(bodies[i])
            else:
                assert not raw.signed and raw.data == bodies[i]
        # the queued ones are sent as they were accepted
        claims = box.claim("w", 10)
        assert sorted(c.id for c in claims) == sorted(
            i for i, r in rows.items() if r["status"] == "queued"
        )
        for c in claims:
            assert c.data == bodies[c.id]
            assert hashlib.sha256(c.data).hexdigest() == rows[c.id]["data_sha256"]
        box.complete("w", [Delivery(c.id, Status.SENT, attempt=OK) for c in claims])
        # new mail is stored compressed beside the old bodies
        with box.transaction() as cur:
            cur.execute(
                "INSERT INTO outbox_messages (brand, sender_brand, sign_brand, event, "
                "mandatory, recipient, language, request_hash, message_id, mail_from, "
                "rcpt_to, data_sha256, status, created_at, updated_at, deadline) "
                "SELECT brand, sender_brand, sign_brand, event, mandatory, recipient, "
                "language, request_hash, '<new@x>', mail_from, rcpt_to, data_sha256, "
                "'queued', created_at, updated_at, deadline FROM outbox_messages WHERE id = 1 "
                "RETURNING id",
            )
            new = cur.fetchone()
            assert new is not None
            [stored] = box.encode_bodies(cur, [("acme", bodies[1])])
            box._insert_bodies(cur, [(int(new[0]), "acme", stored)])
        assert box.raw(int(new[0])).data == bodies[1]
        assert stored.data[:1] == b"\x00" and len(stored.data) < len(bodies[1]) / 2
        if box.kind == "sqlite":  # small: switched to incremental vacuum when opened
            with box.transaction(write=False) as cur:
                assert cur.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        # and the old messages purge like any other
        assert box.purge(now=T0 + box.config.retention + DAY) == len(rows)
    with open_outbox(settings, OutboxConfig(), url=legacy_url) as again:  # opens as current
        assert again.raw(int(new[0])).data == bodies[1]


# --- rows of every state and age, in the previous release's schema ----------------------

#: a body as the release stored it: the message's bytes as they are
BODY = b"From: Acme <domains@acme.fi>\r\nSubject: old\r\n\r\nstored before compression\r\n"
NOW = 1_800_000_000.0  # when the rows of every state were made
COLUMNS = (
    "brand, sender_brand, sign_brand, event, mandatory, domain, recipient, language, "
    "request_hash, message_id, mail_from, rcpt_to, data_sha256, status, created_at, "
    "updated_at, next_attempt_at, deadline"
)
#: (status, age in days) of the messages the old release stored
STORED = [("sent", 300), ("sent", 2), ("failed", 100), ("failed", 1), ("queued", 0)]
STORED += [("deferred", 0), ("held", 0)]


def rows() -> list[tuple[Any, ...]]:
    out = []
    for i, (status, age) in enumerate(STORED):
        at = NOW - age * DAY
        due = at if status in ("queued", "deferred") else None
        email = f"u{i}@example.fi"
        head = ("acme", "acme", "acme", "domain.renewal_reminder", True, f"d{i}.fi", email)
        out.append((*head, "fi", "h", f"<m{i}@x>", "b@x", email, "0" * 64, status, at, at, due))
        out[-1] += (at + 4 * DAY,)
    return out


#: the dump's tables the schema needs (its stored fingerprint among them), not its mail
SCHEMA_ROWS = ("outbox_meta", "brand_dns_version")


@contextmanager
def _every_state(tmp_path: Path, kind: str) -> Iterator[str]:
    """The previous release's schema holding :data:`STORED` (bodies as it stored them:
    the bytes as they were) and one suppressed address."""
    marks = ", ".join(["?" if kind == "sqlite" else "%s"] * 18)
    insert = f"INSERT INTO outbox_messages ({COLUMNS}) VALUES ({marks})"
    suppress = (
        "INSERT INTO outbox_suppressions (brand, email, reason, created_at) "
        "VALUES ('acme', 'gone@example.fi', 'no such user', 0)"
    )
    if kind == "sqlite":
        path = tmp_path / "old.db"
        _make_sqlite(path, SCHEMA_ROWS)
        with sqlite3.connect(path) as db:
            db.executemany(insert, rows())
            ids = [i for (i,) in db.execute("SELECT id FROM outbox_messages").fetchall()]
            db.executemany(
                "INSERT INTO outbox_bodies (message, data) VALUES (?, ?)", [(i, BODY) for i in ids]
            )
            db.execute(suppress)
        db.close()
        yield f"sqlite:///{path}"
        return
    with postgres_schema("old") as url:
        _make_postgres(url, SCHEMA_ROWS)
        with psycopg.connect(url) as conn:
            with conn.cursor() as cur:
                cur.executemany(insert, rows())
            conn.execute(
                "INSERT INTO outbox_bodies (message, data) SELECT id, %s FROM outbox_messages",
                [BODY],
            )
            conn.execute(suppress)
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rows_of_every_state_are_counted_and_found_after_the_migration(
    tmp_path: Path, kind: str
) -> None:
    with _every_state(tmp_path, kind) as url:
        settings = Settings(var_dir=tmp_path / "var")
        box: Outbox
        with open_outbox(settings, url=url, clock=lambda: NOW) as box:
            stats = box.stats()
            assert stats["total"] == len(STORED)
            assert stats["by_status"]["sent"] == 2 and stats["by_status"]["failed"] == 2
            assert stats["by_status"]["held"] == 1
            assert stats["suppressed_addresses"] == 1 and stats["due"] == 2
            assert box.metrics().suppressed == {"acme": 1}
            assert [m.id for m in box.search(domain="D1.fi")] == [2]
            assert [m.id for m in box.search(recipient="u0@example.fi")] == [1]
            assert [m.id for m in box.search(brand="acme", status="sent")] == [2, 1]
            assert box.retry_failed() == 1  # the one failed yesterday, not 100 days ago
            with box.transaction(write=False) as cur:
                if kind == "sqlite":
                    names = "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')"
                else:
                    names = (
                        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                        "UNION ALL SELECT tgname FROM pg_trigger"
                    )
                found = {str(r[0]) for r in cur.execute(names).fetchall()}
            assert {"outbox_recipient", "outbox_domain_name", "outbox_failed"} <= found
            assert {"outbox_tally_insert", "outbox_tally_update"} <= found
            assert "outbox_status" not in found  # SQLite: replaced by partial indexes
            # new behaviour on the old rows: the claim and the tallies follow
            claimed = box.claim("w", 10)
            assert {c.id for c in claimed} == {4, 5, 6}  # + the retried failure
            assert all(c.data == BODY for c in claimed)  # old bodies read as they were
            assert box.stats()["by_status"][Status.SENDING] == 3
        # opened again: the schema is current, nothing is counted twice
        with open_outbox(settings, url=url, clock=lambda: NOW) as box:
            assert box.stats()["total"] == len(STORED)
            assert box.stats()["by_status"]["sending"] == 3
