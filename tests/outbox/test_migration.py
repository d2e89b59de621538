"""A database made by the release before compressed bodies (53d466c) opens with this
code: the new table, column and indexes are added, its bodies (stored as they were
sent) read back with their SHA-256, its queued mail is sent as it was accepted, and
new mail is stored compressed next to it."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.config import Secret, Settings
from notifier.outbox import OutboxConfig, open_outbox
from notifier.outbox.model import DAY, Delivery, Status
from tests.conftest import postgres_schema
from tests.test_outbox import OK

LEGACY = json.loads((Path(__file__).parent / "data" / "outbox-53d466c.json").read_text())
T0 = 1_700_000_000.0  # when the legacy messages were made


def _value(v: Any) -> Any:
    return base64.b64decode(v["b64"]) if isinstance(v, dict) else v


def _make_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:  # main's connection set-up: no auto_vacuum pragma
        db.execute("PRAGMA journal_mode = WAL")
        for statement in LEGACY["schema"]["sqlite"]:
            db.execute(statement)
        for table, dump in LEGACY["tables"].items():
            marks = ", ".join("?" for _ in dump["columns"])
            db.execute(f"DELETE FROM {table}")  # the schema's own rows (meta, backfill)
            db.executemany(
                f"INSERT INTO {table} ({', '.join(dump['columns'])}) VALUES ({marks})",
                [[_value(v) for v in row] for row in dump["rows"]],
            )
    db.close()


def _make_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        for statement in LEGACY["schema"]["postgres"]:
            db.execute(statement)
        for table, dump in sorted(LEGACY["tables"].items(), key=_parents_first):
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
