"""Opening an outbox whose schema is current runs no DDL: on a busy PostgreSQL even
``CREATE INDEX IF NOT EXISTS`` waits for the table locks of the workers' writes (seen as
a deadlock between a worker and a CLI call opening the outbox)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from notifier.config import Settings
from notifier.outbox import open_outbox
from tests.conftest import postgres_schema


def test_opening_a_current_outbox_waits_for_no_table_lock(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    with postgres_schema("sch") as url:
        open_outbox(settings, url=url).close()
        with psycopg.connect(url) as writer:
            # a worker's write in progress: DDL on the table would have to wait for it
            writer.execute("LOCK TABLE outbox_messages IN ROW EXCLUSIVE MODE")
            impatient = url.replace("options=", "options=-clock_timeout%3D1000%20")
            with open_outbox(settings, url=impatient) as box:
                assert box.stats() is not None
        # a schema that changed (here: its fingerprint lost) is brought up to date
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM outbox_meta WHERE key = 'schema_fingerprint'")
        with open_outbox(settings, url=url) as box, box.transaction(write=False) as cur:
            row = cur.execute(
                "SELECT value FROM outbox_meta WHERE key = 'schema_fingerprint'"
            ).fetchone()
            assert row is not None and len(str(row[0])) == 64
