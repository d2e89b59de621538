"""The durable outbox: SQLite embedded by default, PostgreSQL for several workers.

>>> outbox = open_outbox(settings)            # sqlite:///var/notifier.db
>>> outbox.store([new_message])               # prepared by notifier.intake
[Accepted(id=1, status='queued', language='fi', duplicate=False, message_id='<…>')]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .brand_dns import BrandDnsState, DnsCheckRecord, DnsRecorded
from .model import (
    Accepted,
    AttemptRecord,
    Claim,
    Delivery,
    InvalidState,
    MessageNotFound,
    MessageRecord,
    NewMessage,
    OutboxConfig,
    RawMessage,
    Status,
    Suppression,
)
from .store import Outbox

if TYPE_CHECKING:
    from ..config import Settings


def open_outbox(
    settings: Settings,
    config: OutboxConfig | None = None,
    *,
    url: str | None = None,
    init: bool = True,
    **kwargs: Any,
) -> Outbox:
    """The outbox for ``settings.database`` (or ``url``), schema created if missing;
    ``config`` defaults to the settings' outbox slice."""
    config = config or settings.outbox_config()
    url = url or settings.database
    outbox: Outbox
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteOutbox, path_from_url

        outbox = SQLiteOutbox(path_from_url(url), config, **kwargs)
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresOutbox

        outbox = PostgresOutbox(url, config, **kwargs)
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
    "BrandDnsState",
    "Claim",
    "Delivery",
    "DnsCheckRecord",
    "DnsRecorded",
    "InvalidState",
    "MessageNotFound",
    "MessageRecord",
    "NewMessage",
    "Outbox",
    "OutboxConfig",
    "RawMessage",
    "Status",
    "Suppression",
    "open_outbox",
]
