"""``notifier db purge|vacuum``: retention and the space it frees, by hand.

The worker purges on its own (every housekeeping interval); these are for an operator:
``vacuum`` once on a SQLite database made before incremental vacuum (it then gives
purged space back by itself), ``purge`` to see what the retention period removes now.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from .common import command, load_settings, new_group

if TYPE_CHECKING:
    from ..outbox import Outbox


def _outbox() -> Outbox:
    from ..outbox import open_outbox

    return open_outbox(load_settings())


def purge_cmd() -> None:
    """Delete messages final for longer than NOTIFIER_RETENTION, and history as old."""
    with _outbox() as outbox:
        before = outbox.database_bytes()
        purged = outbox.purge()
        after = outbox.database_bytes()
    typer.echo(f"purged {purged} message(s); database {before:,} → {after:,} bytes")


def vacuum_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Rewrite the database compactly (SQLite: one copy of the file, holding the write
    lock throughout; needs free disk of its size. PostgreSQL: VACUUM ANALYZE)."""
    with _outbox() as outbox:
        result = outbox.vacuum()
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"database {int(result['bytes_before']):,} → {int(result['bytes_after']):,} bytes "
        f"in {result['seconds']} s"
    )


def register(app: typer.Typer) -> None:
    """Add the ``db`` group to the main CLI."""
    db_app = new_group("The outbox database: retention and space.")
    command(db_app, "purge")(purge_cmd)
    command(db_app, "vacuum")(vacuum_cmd)
    app.add_typer(db_app, name="db")


__all__ = ["register"]
