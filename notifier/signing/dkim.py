"""DKIM signing for a brand's own domain, and the policy for brands whose DNS is not ready.

dkimpy does the parts it does well (header parsing, and verification in the tests);
the private-key operation is done by OpenSSL through ``cryptography``: stock
``dkim.sign`` does RSA in pure Python, about 30x slower for RSA-2048. Relaxed
canonicalisation (body and fields) and the selection of the signed fields are dkimpy's
rules, minus the regex passes that cannot change anything, and done once per message
for both signatures (each tested equal to dkimpy's on random input; every signature in
the tests is checked by ``dkim.verify``). ``bench/dkim.py`` measures the whole against
stock ``dkim.sign``.

Signatures are relaxed/relaxed without ``l=`` (an ``l=`` lets anyone append content).
From, To, Subject, Date, Message-ID and Reply-To are over-signed: ``h=`` names each one
more time than it occurs, so a prepended second copy (or a Reply-To added where there
was none) breaks the signature; dkimpy over-signs only From by default. The other
signed fields (MIME-Version, Content-Type, List-Unsubscribe, List-Unsubscribe-Post)
are over-signed when present, as rspamd does: a second List-Unsubscribe would
otherwise let someone point one-click unsubscribes elsewhere under our signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import (
    correct_empty_body,
    strip_trailing_lines,
    strip_trailing_whitespace,
)

from ..brands import Brand
from ..dns.alignment import aligned
from ..errors import SigningError
from .keys import DKIMKey, KeyStore

#: Fields signed where present, in this order.
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
#: Always named once more than they occur (so also when absent: none may be added).
OVERSIGNED: frozenset[bytes] = frozenset(
    {b"from", b"to", b"subject", b"date", b"message-id", b"reply-to"}
)
#: Named once more than they occur, but only when present.
OVERSIGNED_IF_PRESENT: frozenset[bytes] = frozenset(SIGNED_HEADERS) - OVERSIGNED
_SIGNABLE = frozenset(SIGNED_HEADERS)

_HEADER_NAME = b"DKIM-Signature"
_LINE = 76  # fold the signature header well below the 78-character recommendation
_NEWLINES = re.compile(rb"\r\n|\r|\n")
_WSP_RUNS = re.compile(rb"\t[\t ]*| [\t ]+")
_WSP = re.compile(rb"[\t ]+")


def normalise_newlines(message: bytes) -> bytes:
    """CRLF everywhere, turning bare CR or LF into CRLF the way aiosmtplib sends them.

    Signing the exact bytes that go on the wire is the only way a stray newline in
    rendered output cannot break the signature later.
    """
    crlf = message.count(b"\r\n")
    if message.count(b"\n") == crlf and message.count(b"\r") == crlf:
        return message  # already clean: three C-speed counts instead of a regex pass
    return _NEWLINES.sub(b"\r\n", message)


def split_message(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """``dkim.rfc822_parse`` for a CRLF message, without splitting the body into lines.

    dkimpy splits the whole message on newlines and joins the body again; for a
    CRLF-only message the body is simply everything after the first empty line.
    """
    end = message.find(b"\r\n\r\n")
    if end < 0 or message.startswith(b"\r\n"):
        headers, body = dkim.rfc822_parse(message)
        return headers, body
    headers, _ = dkim.rfc822_parse(message[: end + 2])
    return headers, message[end + 4 :]


def canonicalize_body_relaxed(body: bytes) -> bytes:
    """dkimpy's relaxed body canonicalisation, skipping the regex passes that are no-ops.

    Same result as ``Relaxed.canonicalize_body`` (a test compares them on random
    input): trailing whitespace is stripped only if some line has any, and only
    whitespace runs that are not a single space are rewritten. This was half of the
    signing time with dkimpy's regexes on a 10 kB message.
    """
    if b" \r\n" in body or b"\t\r\n" in body:
        body = strip_trailing_whitespace(body)
    if b"\t" in body or b"  " in body:
        # dkimpy's compress_whitespace rewrites every single space too; only runs that
        # are not already one space change anything.
        body = _WSP_RUNS.sub(b" ", body)
    result: bytes = correct_empty_body(strip_trailing_lines(body))
    return result


def canonicalize_header_relaxed(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """dkimpy's relaxed header canonicalisation of one field (a test compares them on
    random input): precompiled patterns, and the whitespace pass only where a run or a
    tab is there to compress — dkimpy's two module-level ``re.sub`` calls a field
    were the largest Python cost of signing after the RSA operation."""
    value = value.replace(b"\r\n", b"").replace(b"\n", b"")  # dkimpy: \r?\n
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    return name.lower().rstrip(), value.strip() + b"\r\n"


def select_fields(
    canonical: Sequence[tuple[bytes, bytes]], include: Sequence[bytes]
) -> list[tuple[bytes, bytes]]:
    """dkimpy's ``select_headers`` for canonicalised (lower-case) fields: for each name
    in ``include``, the bottom-most field of that name not taken yet; a name listed
    more often than it occurs (over-signing) selects nothing more."""
    positions: dict[bytes, list[int]] = {}
    for i, (name, _) in enumerate(canonical):
        positions.setdefault(name, []).append(i)
    selected = []
    for name in include:
        stack = positions.get(name)
        if stack:
            selected.append(canonical[stack.pop()])
    return selected


def from_domain(headers: Sequence[Sequence[bytes]]) -> str:
    """Domain of the single From address; anything else is a malformed message."""
    values = [h[1] for h in headers if h[0].lower().strip() == b"from"]
    if len(values) != 1:
        raise SigningError(f"message must have exactly one From header, found {len(values)}")
    raw = bytes(values[0])
    domain = _FROM_DOMAINS.get(raw)
    if domain is None:
        domain = _address_domain(raw)
        if len(_FROM_DOMAINS) >= _FROM_CACHE_SIZE:
            _FROM_DOMAINS.clear()
        _FROM_DOMAINS[raw] = domain
    return domain


#: From field value → its address's domain: a brand's mail has a handful of From
#: values, and the email package's address parser was a tenth of a worker's signing
_FROM_DOMAINS: dict[bytes, str] = {}
_FROM_CACHE_SIZE = 4096


def _address_domain(raw_value: bytes) -> str:
    raw = raw_value.decode("utf-8", "replace")
    try:
        text = str(make_header(decode_header(raw)))
    except (ValueError, LookupError):
        text = raw
    addresses = [addr for _, addr in getaddresses([text]) if addr]
    if len(addresses) != 1 or "@" not in addresses[0]:
        raise SigningError(f"From must hold exactly one address, got {text.strip()!r}")
    return addresses[0].rpartition("@")[2].strip().lower()


def header_list(headers: Sequence[Sequence[bytes]]) -> list[bytes]:
    """The ``h=`` list for these headers: present fields plus the over-signing extras."""
    counts: dict[bytes, int] = {}
    for header in headers:
        lname = header[0].lower().strip()
        counts[lname] = counts.get(lname, 0) + 1
    result: list[bytes] = []
    for name in SIGNED_HEADERS:
        n = counts.get(name, 0)
        if name in OVERSIGNED or (n and name in OVERSIGNED_IF_PRESENT):
            n += 1
        result.extend([name] * n)
    return result


def _fold(items: list[list[bytes]], first: int) -> bytes:
    """Join tag atoms into lines of at most ``_LINE`` characters.

    ``items`` is one list per tag; a line may break only between atoms, which are
    placed where DKIM allows folding whitespace: after ``;`` between tags, after
    ``:`` in ``h=``, and between characters of a base64 value.
    """
    out = bytearray()
    col = first
    for i, atoms in enumerate(items):
        for j, atom in enumerate(atoms):
            sep = b" " if (i and not j) else b""
            if col + len(sep) + len(atom) > _LINE and col > 1:
                out += b"\r\n "
                col = 1
                sep = b""
            out += sep + atom
            col += len(sep) + len(atom)
        if i < len(items) - 1:
            out += b";"
            col += 1
    return bytes(out)


def _b_lines(signature: bytes, width: int = 72) -> bytes:
    """``b=`` and the base64 signature, wrapped (folding whitespace is allowed in base64)."""
    text = b"b=" + base64.b64encode(signature)
    return b"\r\n ".join(text[i : i + width] for i in range(0, len(text), width))


@dataclass(frozen=True)
class _Prepared:
    """What both signatures share: the hash input of the signed fields (canonicalised,
    in ``h=`` order, as dkimpy's ``hash_headers`` selects them), body hash, ``h=``."""

    signed_fields: bytes
    body_hash: bytes
    include: list[bytes]


class Signer:
    """Signs messages for a brand with its active selectors; keys come from a KeyStore.

    Thread-safe; keys are parsed once per (brand, selector) by the key store.
    """

    def __init__(self, keystore: KeyStore, *, clock: Callable[[], float] = time.time) -> None:
        self.keystore = keystore
        self.clock = clock

    def __repr__(self) -> str:
        return f"Signer({self.keystore!r})"

    # public API -------------------------------------------------------------------

    def sign(self, message: bytes, brand: Brand, *, check_alignment: bool = True) -> bytes:
        """Return ``message`` (newlines normalised to CRLF) with DKIM-Signature headers on top.

        ``rsa-sha256`` with the brand's active RSA selector always; ``ed25519-sha256`` as
        well when the brand has an active Ed25519 selector. ``d=`` is
        ``brand.mail_domain``, which must align with the From domain (unless
        ``check_alignment`` is off: ``notifier render --sign`` checks a brand's key on a
        message that goes out via the platform). Sign last, after every change.
        """
        message = normalise_newlines(message)
        headers = self.signature_headers(message, brand, check_alignment=check_alignment)
        return b"".join(headers) + message

    def signature_headers(
        self, message: bytes, brand: Brand, *, check_alignment: bool = True
    ) -> list[bytes]:
        """Just the ``DKIM-Signature: ...\\r\\n`` lines, RSA first; ``message`` must be CRLF."""
        rsa_sel = brand.active_selector("rsa")
        if rsa_sel is None:
            raise SigningError(f"brand {brand.id!r} has no active RSA DKIM selector")
        keys = [self._key(brand, rsa_sel.name, "rsa")]
        ed_sel = brand.active_selector("ed25519")
        if ed_sel is not None:
            keys.append(self._key(brand, ed_sel.name, "ed25519"))
        prepared = self._prepare(message, brand, check_alignment)
        timestamp = int(self.clock())
        return [self._signature(prepared, key, brand.mail_domain, timestamp) for key in keys]

    def verify_ready(self, brand: Brand) -> None:
        """Load the brand's active keys now, so a missing key fails at startup, not mid-queue."""
        rsa_sel = brand.active_selector("rsa")
        if rsa_sel is None:
            raise SigningError(f"brand {brand.id!r} has no active RSA DKIM selector")
        self._key(brand, rsa_sel.name, "rsa")
        ed_sel = brand.active_selector("ed25519")
        if ed_sel is not None:
            self._key(brand, ed_sel.name, "ed25519")

    # internals --------------------------------------------------------------------

    def _key(self, brand: Brand, selector: str, algorithm: str) -> DKIMKey:
        key = self.keystore.load(brand.id, selector)
        if key.algorithm != algorithm:
            raise SigningError(
                f"brand {brand.id!r} selector {selector!r} is configured as {algorithm} but "
                f"its key is {key.algorithm}"
            )
        return key

    def _prepare(self, message: bytes, brand: Brand, check_alignment: bool = True) -> _Prepared:
        try:
            headers, body = split_message(message)
        except dkim.MessageFormatError as exc:
            raise SigningError(f"message cannot be signed: {exc}") from exc
        domain = from_domain(headers)
        if check_alignment and not aligned(domain, brand.mail_domain):
            raise SigningError(
                f"From domain {domain!r} does not align with d={brand.mail_domain} of brand "
                f"{brand.id!r}; DMARC would fail (the sender decision picks the signer)"
            )
        body_hash = base64.b64encode(hashlib.sha256(canonicalize_body_relaxed(body)).digest())
        include = header_list(headers)
        # only the fields that can be signed are canonicalised (the rest never count)
        canon = [
            canonicalize_header_relaxed(h[0], h[1])
            for h in headers
            if h[0].lower().strip() in _SIGNABLE
        ]
        selected = select_fields(canon, include)
        return _Prepared(
            signed_fields=b"".join(name + b":" + value for name, value in selected),
            body_hash=body_hash,
            include=include,
        )

    def _signature(self, p: _Prepared, key: DKIMKey, domain: str, timestamp: int) -> bytes:
        algo = b"rsa-sha256" if key.algorithm == "rsa" else b"ed25519-sha256"
        h_atoms = [b"h=" + p.include[0] + b":"]
        h_atoms += [name + b":" for name in p.include[1:]]
        h_atoms[-1] = h_atoms[-1][:-1]
        items: list[list[bytes]] = [
            [b"v=1"],
            [b"a=" + algo],
            [b"c=relaxed/relaxed"],
            [b"d=" + domain.encode("ascii")],
            [b"s=" + key.selector.encode("ascii")],
            [b"t=" + str(timestamp).encode("ascii")],
            h_atoms,
            [b"bh=" + p.body_hash],
        ]
        # b= goes on a line of its own, so its value never re-flows the tags above it;
        # the hash takes the field with b= empty, canonicalised (unfolded) as a
        # verifier sees it — dkimpy's hash_headers, with the signed fields' part done
        # once per message in _prepare
        tags = _fold(items, len(_HEADER_NAME) + 2) + b";\r\n "
        name, canonical = canonicalize_header_relaxed(_HEADER_NAME, b" " + tags + b"b=")
        digest = hashlib.sha256(p.signed_fields + name + b":" + canonical.rstrip()).digest()
        sig = self._sign_digest(key, digest)
        return _HEADER_NAME + b": " + tags + _b_lines(sig) + b"\r\n"

    @staticmethod
    def _sign_digest(key: DKIMKey, digest: bytes) -> bytes:
        pk = key.private_key
        try:
            if isinstance(pk, rsa.RSAPrivateKey):
                return pk.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
            if isinstance(pk, ed25519.Ed25519PrivateKey):
                # RFC 8463: PureEdDSA over the SHA-256 hash of the header hash input.
                return pk.sign(digest)
        except Exception as exc:  # OpenSSL errors have no common base class
            raise SigningError(
                f"signing with selector {key.selector!r} failed: {type(exc).__name__}"
            ) from exc
        raise SigningError(f"unsupported key type for selector {key.selector!r}")
