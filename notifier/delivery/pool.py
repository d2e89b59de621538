"""Where to connect and the connections kept open there: endpoints and per-endpoint pools.

The engine (:mod:`notifier.delivery.smtp`) leases a connection from the :class:`Pool`
of an :class:`Endpoint` for one transaction and hands it back when it is still fit
for use (connected, not broken, not too old, not used too often).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from ..config import Secret

__all__ = ["STARTTLS_MODES", "Conn", "Endpoint", "Limits", "Pool", "StartTLS", "hang_up"]

StartTLS = Literal["required", "opportunistic", "never"]
STARTTLS_MODES: tuple[StartTLS, ...] = ("required", "opportunistic", "never")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One SMTP server as the engine reaches it: address, TLS mode and credentials."""

    host: str  # what to connect to: a name (relay) or an IP address (direct)
    port: int
    label: str  # recorded as AttemptResult.host
    tls_name: str  # SNI and certificate name
    implicit_tls: bool = False
    starttls: StartTLS = "opportunistic"
    plaintext_fallback: bool = False  # opportunistic STARTTLS failed: retry in clear
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)


def hang_up(smtp: aiosmtplib.SMTP) -> None:
    """Close a connection at once. ``SMTP.close()`` alone starts a polite TLS shutdown
    that a broken or vanished peer never answers, and the socket then outlives the
    event loop (an unclosed transport when the loop ends)."""
    transport = smtp.transport
    smtp.close()
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


@dataclass(slots=True, eq=False)
class Conn:
    """An open session and what the pool needs to know to reuse it."""

    smtp: aiosmtplib.SMTP
    label: str
    opened: float
    last_used: float
    used: int = 0  # transactions completed on this connection (sent or refused)
    reused: bool = False
    broken: bool = False
    busy: bool = False  # inside a transaction; if still set on release, state is unknown

    def drop(self) -> None:
        """Never reuse this session: its state is unknown or the server ends it."""
        self.broken = True
        hang_up(self.smtp)


@dataclass(frozen=True, slots=True)
class Limits:
    """Pool size and when a connection is retired (transactions, age, idle time)."""

    size: int
    max_per_connection: int
    max_age: float
    max_idle: float


class Pool:
    """At most ``size`` connections to one endpoint: leased ones plus idle ones."""

    def __init__(self, endpoint: Endpoint, limits: Limits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.size)
        self.idle: list[Conn] = []
        self.users = 0  # sends holding or waiting for a slot

    def reusable(self, conn: Conn, now: float) -> bool:
        return (
            conn.smtp.is_connected
            and not conn.broken
            and not conn.busy
            and conn.used < self.limits.max_per_connection
            and now - conn.opened < self.limits.max_age
        )

    def take_idle(self, now: float) -> tuple[Conn | None, list[Conn]]:
        """The most recently used idle connection still fit for use, and the unfit ones."""
        unfit: list[Conn] = []
        while self.idle:
            conn = self.idle.pop()
            if self.reusable(conn, now) and now - conn.last_used < self.limits.max_idle:
                conn.reused = True
                return conn, unfit
            unfit.append(conn)
        return None, unfit

    def expire_idle(self, now: float) -> list[Conn]:
        keep = [
            c
            for c in self.idle
            if self.reusable(c, now) and now - c.last_used < self.limits.max_idle
        ]
        gone = [c for c in self.idle if c not in keep]
        self.idle = keep
        return gone
