"""DKIM key store: one PEM file per brand and selector, and the DNS record to publish.

Layout: ``<key_dir>/<brand>/<selector>.pem`` (directories 0700, files 0600, PKCS#8 PEM,
unencrypted: the file mode is the protection, as with OpenDKIM). Keys are never
overwritten, so a selector that was published always keeps the key it was published
with; rotation is a new selector. Private keys are parsed once and cached; they never
appear in a repr, a log line, an exception message or a return value meant for output.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..brands import Brand
from ..errors import KeyStoreError

log = logging.getLogger(__name__)

Algorithm = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ALGORITHMS: tuple[Algorithm, ...] = ("rsa", "ed25519")
#: RFC 8301: verifiers MUST accept 1024-4096; signers SHOULD use at least 2048.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
#: One character-string in a TXT record holds at most 255 octets (RFC 1035 §3.3).
TXT_CHUNK = 255

# Same rules as brands.Selector / Brand.id: they also keep paths inside the store.
_SELECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_BRAND_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class DNSRecord:
    """A TXT record to publish; ``value`` is the whole text, ``strings`` its ≤255-byte parts."""

    name: str
    value: str
    type: str = "TXT"

    @property
    def strings(self) -> list[str]:
        raw = self.value.encode("ascii")
        return [raw[i : i + TXT_CHUNK].decode("ascii") for i in range(0, len(raw), TXT_CHUNK)] or [
            ""
        ]

    @property
    def presentation(self) -> str:
        """The TXT data as DNS hosting panels and zone files take it: quoted strings."""
        return " ".join(f'"{part}"' for part in self.strings)

    def zone_line(self) -> str:
        return f"{self.name}. IN TXT {self.presentation}"

    def record_json(self) -> dict[str, str]:
        """``{"name", "type", "value"}``; value is the quoted ≤255-byte strings."""
        return {"name": self.name, "type": self.type, "value": self.presentation}


@dataclass(frozen=True)
class DKIMKey:
    """A loaded private key; the key material is left out of repr and comparison."""

    brand_id: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False, compare=False)

    @property
    def bits(self) -> int:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.key_size
        return 256

    @property
    def public_bytes(self) -> bytes:
        """What goes into ``p=``: SubjectPublicKeyInfo DER (RSA), raw key (Ed25519, RFC 8463)."""
        return public_key_bytes(self.private_key)

    @property
    def public_value(self) -> str:
        p = base64.b64encode(self.public_bytes).decode("ascii")
        return f"v=DKIM1; k={self.algorithm}; p={p}"

    def dns_record(self, mail_domain: str) -> DNSRecord:
        return DNSRecord(name=f"{self.selector}._domainkey.{mail_domain}", value=self.public_value)

    def matches(self, published_p: str) -> bool:
        """Does a published ``p=`` value (base64, whitespace allowed) hold this key?"""
        try:
            data = base64.b64decode(re.sub(r"\s+", "", published_p), validate=True)
        except ValueError:
            return False
        if data == self.public_bytes:
            return True
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            # Some publishers use the bare PKCS#1 RSAPublicKey; dkimpy accepts both.
            try:
                loaded = serialization.load_der_public_key(data)
            except (ValueError, UnsupportedAlgorithm):
                return False
            if isinstance(loaded, rsa.RSAPublicKey):
                return loaded.public_numbers() == self.private_key.public_key().public_numbers()
        return False


def public_key_bytes(key: PrivateKey) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_names(brand_id: str, selector: str) -> None:
    if not _BRAND_ID.match(brand_id):
        raise KeyStoreError(f"invalid brand id {brand_id!r}")
    if not _SELECTOR.match(selector):
        raise KeyStoreError(
            f"invalid selector {selector!r}: use 1-63 of a-z, 0-9 and '-', starting with a "
            "letter or digit"
        )


class KeyStore:
    """Private DKIM keys under one directory (``Settings.keys_path``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[tuple[str, str], DKIMKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r})"

    def path(self, brand_id: str, selector: str) -> Path:
        _check_names(brand_id, selector)
        return self.directory / brand_id / f"{selector}.pem"

    def exists(self, brand_id: str, selector: str) -> bool:
        return self.path(brand_id, selector).exists()

    def selectors(self, brand_id: str) -> list[str]:
        """Selectors with a key on disk, for ops listings."""
        folder = self.directory / brand_id
        return sorted(p.stem for p in folder.glob("*.pem")) if folder.is_dir() else []

    # writing ----------------------------------------------------------------------

    def generate(
        self,
        brand: Brand,
        selector: str,
        algorithm: Algorithm = "rsa",
        bits: int = 2048,
    ) -> DNSRecord:
        """Create a new key and return the record to publish; never replaces a key.

        The file is written to a temporary name, fsync'd and hard-linked into place:
        the link fails if the selector exists, so two concurrent keygens cannot both
        win and a crash never leaves a half-written key under the real name.
        """
        if algorithm not in ALGORITHMS:
            raise KeyStoreError(f"unknown algorithm {algorithm!r}; use rsa or ed25519")
        for sel in brand.dkim:
            if sel.name == selector and sel.algorithm != algorithm:
                raise KeyStoreError(
                    f"brand {brand.id!r} lists selector {selector!r} as {sel.algorithm}, "
                    f"not {algorithm}"
                )
        target = self.path(brand.id, selector)
        if target.exists():
            raise KeyStoreError(
                f"key for brand {brand.id!r} selector {selector!r} already exists at {target}; "
                "keys are never overwritten: choose a new selector to rotate"
            )
        key: PrivateKey
        if algorithm == "rsa":
            if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
                raise KeyStoreError(
                    f"RSA key size must be {MIN_RSA_BITS}-{MAX_RSA_BITS} bits (RFC 8301), "
                    f"got {bits}"
                )
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write_new(target, pem)
        loaded = DKIMKey(brand.id, selector, algorithm, key)
        with self._lock:
            self._cache[(brand.id, selector)] = loaded
        log.info(
            "generated DKIM key brand=%s selector=%s algorithm=%s", brand.id, selector, algorithm
        )
        return loaded.dns_record(brand.mail_domain)

    def _write_new(self, target: Path, data: bytes) -> None:
        try:
            for folder in (self.directory, target.parent):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(target.parent, 0o700)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".keygen-", suffix=".tmp")
            try:
                # mkstemp creates 0600 regardless of umask.
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise KeyStoreError(
                        f"key {target} already exists; keys are never overwritten"
                    ) from None
            finally:
                os.unlink(tmp)
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise KeyStoreError(f"cannot write key {target}: {exc.strerror or exc}") from exc

    # reading ----------------------------------------------------------------------

    def load(self, brand_id: str, selector: str) -> DKIMKey:
        """The key for a selector, parsed once per process."""
        cache_key = (brand_id, selector)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        path = self.path(brand_id, selector)
        try:
            info = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(
                f"no DKIM key for brand {brand_id!r} selector {selector!r} (expected {path}); "
                f"create it with: notifier dkim keygen --brand {brand_id} --selector {selector}"
            ) from None
        except OSError as exc:
            raise KeyStoreError(f"cannot read DKIM key {path}: {exc.strerror or exc}") from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "DKIM key %s is readable by group or others (mode %o); use 0600",
                path,
                stat.S_IMODE(info.st_mode),
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # The message of the underlying error never includes key material, but keep
            # ours generic anyway.
            raise KeyStoreError(f"DKIM key {path} is not an unencrypted PEM private key") from exc
        algorithm: Algorithm
        if isinstance(key, rsa.RSAPrivateKey):
            algorithm = "rsa"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            algorithm = "ed25519"
        else:
            raise KeyStoreError(f"DKIM key {path} is neither RSA nor Ed25519")
        loaded = DKIMKey(brand_id, selector, algorithm, key)
        with self._lock:
            self._cache.setdefault(cache_key, loaded)
            return self._cache[cache_key]

    def record(self, brand: Brand, selector: str) -> DNSRecord:
        """The record to publish for an existing selector."""
        return self.load(brand.id, selector).dns_record(brand.mail_domain)

    def record_json(self, brand: Brand, selector: str) -> dict[str, str]:
        return self.record(brand, selector).record_json()
