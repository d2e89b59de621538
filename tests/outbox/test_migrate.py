"""A database made by the release before issue 13 (its schema is in ``data/``: SQLite
as the dump its ``init_schema`` left, PostgreSQL as its DDL list) opens with today's
code: the new indexes, tallies and triggers are added, the stored rows are counted
once, and everything stored is still there and found through the new indexes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.config import Settings
from notifier.outbox import Outbox, Status, open_outbox
from notifier.outbox.model import DAY
from tests.conftest import postgres_schema

DATA = Path(__file__).parent / "data"
#: a body as the release stored it: the message's bytes as they are
BODY = b"From: Acme <domains@acme.fi>\r\nSubject: old\r\n\r\nstored before compression\r\n"
NOW = 1_800_000_000.0
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


@contextmanager
def old_sqlite(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "main_sqlite.sql").read_text("utf-8"))
    conn.executemany(
        f"INSERT INTO outbox_messages ({COLUMNS}) VALUES ({', '.join(['?'] * 18)})", rows()
    )
    conn.executemany(
        "INSERT INTO outbox_bodies (message, data) VALUES (?, ?)",
        [(i, BODY) for (i,) in conn.execute("SELECT id FROM outbox_messages").fetchall()],
    )
    conn.execute(
        "INSERT INTO outbox_suppressions (brand, email, reason, created_at) "
        "VALUES ('acme', 'gone@example.fi', 'no such user', 0)"
    )
    conn.commit()
    conn.close()
    yield f"sqlite:///{path}"


@contextmanager
def old_postgres() -> Iterator[str]:
    with postgres_schema("old") as url, psycopg.connect(url) as conn:
        text = (DATA / "main_postgres.sql").read_text("utf-8")
        for statement in text.split("\n;;\n"):
            body = "\n".join(x for x in statement.splitlines() if not x.startswith("--"))
            if body.strip():
                conn.execute(body)
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO outbox_messages ({COLUMNS}) VALUES ({', '.join(['%s'] * 18)})",
                rows(),
            )
        conn.execute(
            "INSERT INTO outbox_bodies (message, data) SELECT id, %s FROM outbox_messages", [BODY]
        )
        conn.execute(
            "INSERT INTO outbox_suppressions (brand, email, reason, created_at) "
            "VALUES ('acme', 'gone@example.fi', 'no such user', 0)"
        )
        conn.commit()
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_outbox_of_the_previous_release_is_migrated(tmp_path: Path, kind: str) -> None:
    make = old_sqlite(tmp_path) if kind == "sqlite" else old_postgres()
    with make as url:
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
