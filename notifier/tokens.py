"""API bearer tokens: stored only as SHA-256 hashes, each with scopes and an optional brand.

A token looks like ``nt_<id>_<secret>``: the id is public (listings, revocation, logs),
the secret is 256 random bits. Only ``sha256(token)`` is stored, so a copy of the
database does not let anyone call the API; a high-entropy secret needs no slow hash.

Scopes: ``events:write`` (post events, retry messages), ``messages:read`` (read
messages), ``admin`` (everything, every brand). A token bound to a brand (a reseller's)
sees only that brand: its preview and its own messages; everything else is 404 to it.

Tokens live in the outbox's database (SQLite by default, PostgreSQL for
``postgresql://`` URLs) in their own table, ``api_tokens``, reached through the
outbox's own transactions (``?`` placeholders, driver errors → StorageError).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .errors import FieldError, ValidationError

SCOPES: tuple[str, ...] = ("events:write", "messages:read", "admin")
PREFIX = "nt_"
_TOKEN = re.compile(r"^nt_([a-z2-7]{10})_([A-Za-z0-9_-]{43})$")
_ID = re.compile(r"^[a-z2-7]{10}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    brand TEXT,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""
_COLUMNS = "id, scopes, brand, label, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class Token:
    """A token's record; never holds the secret."""

    id: str
    scopes: frozenset[str]
    brand: str | None
    label: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.admin or scope in self.scopes

    def sees(self, brand_id: str) -> bool:
        """May this token see ``brand_id``'s messages, preview and DNS?"""
        return self.brand is None or self.brand == brand_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scopes": sorted(self.scopes),
            "brand": self.brand,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """``(id, token)``: a fresh id (base32, 50 bits) and the full secret token."""
    raw = secrets.token_bytes(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    number = int.from_bytes(raw, "big")
    token_id = "".join(alphabet[(number >> (5 * i)) & 31] for i in range(10))
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token, else ``None``."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def check_scopes(scopes: Iterable[str], brand: str | None) -> frozenset[str]:
    wanted = frozenset(s.strip() for s in scopes if s.strip())
    if not wanted:
        raise ValidationError([FieldError("scope", f"give at least one of {', '.join(SCOPES)}")])
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValidationError(
            [FieldError("scope", f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")]
        )
    if brand is not None and "admin" in wanted:
        raise ValidationError(
            [FieldError("scope", "an admin token sees every brand and cannot be bound to one")]
        )
    return wanted


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _row(row: Sequence[Any]) -> Token:
    created = _time(row[4])
    assert created is not None
    return Token(
        id=str(row[0]),
        scopes=frozenset(str(row[1]).split()),
        brand=row[2],
        label=str(row[3] or ""),
        created_at=created,
        revoked_at=_time(row[5]),
    )


class Database(Protocol):
    """What the token store needs of the outbox: transactions over DB-API cursors, and
    single reads outside of one."""

    def transaction(self, write: bool = True) -> AbstractContextManager[Any]: ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class TokenStore:
    """Create, list, revoke and authenticate tokens; errors are :class:`StorageError`."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._ready = False

    def _execute(self, sql: str, params: Sequence[Any] = (), write: bool = False) -> list[Any]:
        if not self._ready:
            with self._database.transaction() as cur:
                cur.execute(_SCHEMA)
            self._ready = True
        with self._database.transaction(write=write) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.raw.description else []

    def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers."""
        self._execute("SELECT 1")

    def create(
        self, scopes: Iterable[str], brand: str | None = None, label: str = ""
    ) -> tuple[Token, str]:
        """A new token: its record and the secret, which is shown once and never stored."""
        wanted = check_scopes(scopes, brand)
        token_id, secret = new_token()
        record = Token(token_id, wanted, brand, label, _now())
        self._execute(
            "INSERT INTO api_tokens (id, token_hash, scopes, brand, label, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                token_id,
                hash_token(secret),
                " ".join(sorted(wanted)),
                brand,
                label,
                record.created_at.isoformat(),
            ),
            write=True,
        )
        return record, secret

    def revoke(self, token_id: str) -> bool:
        """Revoke by id (or by the full token); ``False`` when there is no such active token."""
        token_id = token_id_of(token_id) or token_id
        if not _ID.match(token_id):
            return False
        rows = self._execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
            (_now().isoformat(), token_id),
            write=True,
        )
        return bool(rows)

    def get(self, token_id: str) -> Token | None:
        rows = self._execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,))
        return _row(rows[0]) if rows else None

    def list(self) -> list[Token]:
        rows = self._execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id")
        return [_row(r) for r in rows]

    def authenticate(self, token: str) -> Token | None:
        """The active token for this secret, else ``None``.

        Asked of the database on every call, never cached: a revocation (by any process
        sharing the database, e.g. ``notifier token revoke``) holds from the very next
        request. It is one lookup on a unique index, about as cheap as reading a
        revocation counter would be."""
        if token_id_of(token) is None:
            return None
        if not self._ready:
            self._execute("SELECT 1")  # creates the table first
        # one statement on its own: on PostgreSQL one round trip, not three (every request)
        rows = self._database.read(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
            (hash_token(token),),
        )
        return _row(rows[0]) if rows else None

    def is_active(self, token_id: str) -> bool:
        """For sessions: is the token behind a session still valid (not revoked)?"""
        record = self.get(token_id)
        return record is not None and record.active
