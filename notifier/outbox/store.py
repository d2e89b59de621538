"""The outbox contract: prepared messages are stored and a worker delivers them.

One table holds every message from acceptance to its final state::

    queued ──claim──▶ sending ──250──▶ sent
      ▲                 │ 4xx / timeout / connection error
      │                 ├──────────────▶ deferred (next_attempt_at) ──due──▶ sending …
      │                 │ 5xx, or past its lifetime (4.4.7)
      │                 ├──────────────▶ failed (reason)
      │                 │ non-mandatory mail to a suppressed address
      │                 └──────────────▶ suppressed
    held (brand DNS unverified, policy "hold") ──DNS verified / queue retry──▶ queued
    queued / deferred / held ──domain renewed, deleted or transferred away──▶ cancelled

The intake (:mod:`notifier.intake`) validates and composes; the outbox stores what it
is given, in one transaction (a failed commit leaves nothing behind). The Message-ID
and Date are fixed at acceptance, so every attempt (and any duplicate a lost 250
causes) carries the same Message-ID. Signing happens at send time, in the worker.

Claims are leases: a worker marks messages ``sending`` with its token and an expiry and
extends the expiry while it works; a message whose lease expired (its worker was killed)
is claimed again by anyone. Outcomes are written only while the lease is still held.

Times are stored as Unix epoch seconds (float) on both databases, so one set of SQL
statements serves SQLite and PostgreSQL; records expose aware ``datetime`` values.
The backends (``sqlite.py``, ``postgres.py``) supply connections, the schema types,
the claim statement and the translation of driver errors into :class:`StorageError`.
"""

from __future__ import annotations

from .brand_dns import BrandDns
from .feedback import Feedback
from .inserts import Inserts
from .leases import Leases
from .queries import Queries
from .retention import Retention
from .wakeups import Wakeups
from .webhooks import Webhooks


class Outbox(Inserts, Leases, Queries, BrandDns, Feedback, Webhooks, Retention, Wakeups):
    """Durable storage of messages from acceptance to their final state: storing
    (:class:`Inserts`), leasing and recording outcomes (:class:`Leases`), reading and
    ops (:class:`Queries`), the brands' observed DNS state (:class:`BrandDns`), inbound
    reports (:class:`Feedback`), webhook endpoints and deliveries (:class:`Webhooks`)
    and purging (:class:`Retention`), with bodies compressed (:class:`Bodies`), waking
    the workers when mail becomes due (:class:`Wakeups`), over one backend's
    connections (:class:`StoreBase`)."""


__all__ = ["Outbox"]
