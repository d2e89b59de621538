"""The durable outbox: SQLite embedded by default, PostgreSQL for several workers.

>>> outbox = open_outbox(settings)            # sqlite:///var/notifier.db
>>> outbox.accept({"event": ..., "brand": ..., "recipient": {...}, "data": {...}})
Accepted(id=1, status='queued', language='fi', duplicate=False, message_id='<…>')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import (
    Accepted,
    AttemptRecord,
    Claim,
    Delivery,
    InvalidState,
    MessageNotFound,
    MessageRecord,
    Outbox,
    OutboxConfig,
    RawMessage,
    Status,
    Suppression,
)

if TYPE_CHECKING:
    from ..compose.pipeline import Pipeline
    from ..config import Settings


def open_outbox(
    settings: Settings,
    pipeline: Pipeline | None = None,
    config: OutboxConfig | None = None,
    *,
    url: str | None = None,
    init: bool = True,
    **kwargs: Any,
) -> Outbox:
    """The outbox for ``settings.database`` (or ``url``), schema created if missing."""
    if pipeline is None:
        from ..compose.pipeline import Pipeline

        pipeline = Pipeline(settings)
    config = config or OutboxConfig.from_env()
    url = url or settings.database
    outbox: Outbox
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteOutbox, path_from_url

        outbox = SQLiteOutbox(path_from_url(url), pipeline, config, **kwargs)
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresOutbox

        outbox = PostgresOutbox(url, pipeline, config, **kwargs)
    else:
        raise ConfigError(
            "database_url: use sqlite:///path/to/notifier.db or postgresql://user@host/db"
        )
    if init:
        try:
            outbox.init_schema()
        except BaseException:
            outbox.close()
            raise
    return outbox


__all__ = [
    "Accepted",
    "AttemptRecord",
    "Claim",
    "Delivery",
    "InvalidState",
    "MessageNotFound",
    "MessageRecord",
    "Outbox",
    "OutboxConfig",
    "RawMessage",
    "Status",
    "Suppression",
    "open_outbox",
]
