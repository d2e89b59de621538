"""VERP envelope senders: one Return-Path per message, ``b-<id>-<mac>@<bounce domain>``.

A bounce comes back to the envelope sender, so the address alone says which message
bounced — no parsing of a stranger's report format needed to find it. The MAC (a
truncated HMAC-SHA256 over the id and the domain, keyed by a secret in the key store)
makes the address unguessable: without it anyone could send us a "bounce" for message
42 and suppress its recipient. The secret lives next to the DKIM keys
(``<key_dir>/verp.key``, mode 0600, made once), because the worker that builds the
address already holds the key store and the inbound server reads the same directory.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import StorageError

__all__ = ["SECRET_FILE", "Verp", "VerpMatch", "load_secret", "verp_for"]

SECRET_FILE = "verp.key"
#: characters of the truncated MAC (base32, 5 bits each: 80 bits)
MAC_CHARS = 16
_LOCAL = re.compile(r"b-([0-9]{1,19})-([a-z2-7]{1,64})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class VerpMatch:
    """A recipient of a report: ``message`` when its local part is a VERP address with
    a valid MAC; ``forged`` when it looks like one but the MAC does not verify."""

    message: int | None
    forged: bool


class Verp:
    """Makes and checks VERP addresses with one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the VERP secret must be at least 16 bytes")
        self._secret = secret

    def mac(self, message: int, domain: str) -> str:
        digest = hmac.new(
            self._secret, f"{message}@{domain.lower()}".encode(), hashlib.sha256
        ).digest()
        # lower-case base32: MTAs may change the case of a local part; compare folds it
        return base64.b32encode(digest).decode()[:MAC_CHARS].lower()

    def address(self, message: int, domain: str) -> str:
        return f"b-{message}-{self.mac(message, domain)}@{domain}"

    def envelope_sender(self, message: int, base: str) -> str:
        """The VERP form of a stored envelope sender (``bounces@bounce.acme.fi``): same
        domain, so SPF and alignment are unchanged."""
        domain = base.rpartition("@")[2]
        return self.address(message, domain) if domain else base

    def check(self, address: str) -> VerpMatch:
        """Which message a report to ``address`` concerns (constant-time MAC compare)."""
        local, _, domain = address.rpartition("@")
        found = _LOCAL.fullmatch(local)
        if not found:
            return VerpMatch(None, False)
        message = int(found.group(1))
        expected = self.mac(message, domain)
        if hmac.compare_digest(expected.encode(), found.group(2).lower().encode()):
            return VerpMatch(message, False)
        return VerpMatch(None, True)


def load_secret(key_dir: Path) -> bytes:
    """The VERP secret under ``key_dir``, made on first use (atomically: two processes
    starting at once agree on one secret)."""
    path = Path(key_dir) / SECRET_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return _read(path)
    except OSError as exc:
        raise StorageError(f"cannot read or create the VERP secret {path}: {exc}") from exc


def _read(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise StorageError(f"the VERP secret {path} is too short (16 bytes at least)")
    return secret


@functools.lru_cache(maxsize=8)
def verp_for(key_dir: Path) -> Verp:
    """One :class:`Verp` per key store directory, read once per process."""
    return Verp(load_secret(key_dir))
