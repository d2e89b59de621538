"""Stored bodies: the exact bytes of each message, compressed with zstd and a dictionary
trained on its brand's own mail.

A rendered message is ≈9.5 kB, but two messages of a brand share nearly all of it
(headers, footer, the HTML layout), so a dictionary trained on the brand's recent mail
brings one to ≈0.6 kB. Base64 hides that sharing (the same HTML encodes differently at
every shift of 3 bytes), so base64 blocks are stored decoded and encoded again on the
way out; a block that would not come back byte for byte stays as it is, and every
stored value is decoded once before it is written, so what is read back is always
exactly what was accepted (the SHA-256 recorded at acceptance is checked on reads).

A stored value is either the raw bytes (rows written before compression existed: RFC
5322 bytes never start with NUL) or ``HEADER`` — NUL, format 1, transform, dictionary
id (4 bytes, 0 = none) — followed by one zstd frame. The dictionary id is also the
body row's ``dictionary`` column, so a dictionary is deleted only once no body uses it.

Dictionaries are trained per brand, away from the accept transaction: after
``train_after`` bodies of a brand without one, a background thread reads the brand's
newest stored values, trains (≈0.05–1.5 s: decompressing them and zstd's training,
both in a process of its own at the lowest CPU priority, see :mod:`.trainer`, so that
it uses idle CPU and mail never waits for it) and inserts the
dictionary in a short transaction of its own; it is retrained as the brand's mail
grows (64 → 256 → 1,000 samples, then every 100,000 bodies) so that changed templates
are learned.
"""

from __future__ import annotations

import binascii
import logging
import re
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import zstandard

from ..errors import StorageError
from . import trainer
from .base import Cursor, StoreBase

log = logging.getLogger("notifier.outbox")

#: zstd level: 3 costs ≈10 µs a message with a dictionary; 7 saves another ≈80 bytes
#: for five times the time
LEVEL = 3
_HEAD = struct.Struct(">BBBI")  # NUL, format, transform, dictionary id
_FORMAT = 1
_PLAIN, _UNBASE64 = 0, 1
#: a part declared base64 (as compose/mime.py writes it); its body starts after the
#: blank line that ends the part's header
_BASE64_PART = b"Content-Transfer-Encoding: base64\r\n"
#: CRLF lines of base64 of one length (the last may be shorter)
_BASE64_BLOCK = re.compile(rb"(?:[A-Za-z0-9+/]{4,}={0,2}\r\n)+")
_REGION = struct.Struct(">III")  # start in the decoded stream, decoded length, line length
#: samples a dictionary is trained on at most; the size of a dictionary
MAX_SAMPLES = 1000
DICT_SIZE = 112_640
RETRAIN_EVERY = 100_000
#: seconds between looks for dictionaries that other processes trained
REFRESH = 10.0

SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox_body_dicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        samples INTEGER NOT NULL,
        created_at REAL NOT NULL,
        data BLOB NOT NULL
    )""",
]
POSTGRES_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox_body_dicts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        brand TEXT NOT NULL,
        samples INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    )""",
    # a zstd frame does not compress again: no pglz/lz4 attempt on every insert, and
    # the value goes out of line as it is once it passes the TOAST threshold
    "ALTER TABLE outbox_bodies ADD COLUMN IF NOT EXISTS dictionary BIGINT "
    "REFERENCES outbox_body_dicts(id)",
    "ALTER TABLE outbox_bodies ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX IF NOT EXISTS outbox_bodies_dictionary ON outbox_bodies (dictionary) "
    "WHERE dictionary IS NOT NULL",
]
_SQLITE_COLUMN = (
    "ALTER TABLE outbox_bodies ADD COLUMN dictionary INTEGER REFERENCES outbox_body_dicts(id)"
)
_SQLITE_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_bodies_dictionary ON outbox_bodies (dictionary) "
    "WHERE dictionary IS NOT NULL"
)


def sqlite_schema(cur: Cursor) -> list[str]:
    """SQLite has no ``ADD COLUMN IF NOT EXISTS``: the column is added when missing (a
    new database, or one from before compression: its bodies stay readable as they
    are). Run after the statements that create ``outbox_bodies``."""
    columns = {r[1] for r in cur.execute("PRAGMA table_info(outbox_bodies)").fetchall()}
    add = [] if "dictionary" in columns else [_SQLITE_COLUMN]
    return [*SQLITE_SCHEMA, *add, _SQLITE_INDEX]


class StoredBody(NamedTuple):
    """What the ``outbox_bodies`` row holds for one message."""

    data: bytes
    dictionary: int | None


# --- the reversible base64 transform ---------------------------------------------------


def unbase64(data: bytes) -> bytes | None:
    """``data`` with its base64 blocks decoded, prefixed by where they were; ``None`` if
    it has none that re-encode to exactly the same bytes."""
    regions: list[tuple[int, int, int]] = []
    out: list[bytes] = []
    size = last = 0
    part = data.find(_BASE64_PART)
    while part >= 0:
        body = data.find(b"\r\n\r\n", part)
        part = data.find(_BASE64_PART, part + 1)
        if body < last:
            continue
        found = _block_at(data, body + 4)
        if found is None:
            continue
        end, decoded, width = found
        out.append(data[last : body + 4])
        size += body + 4 - last
        regions.append((size, len(decoded), width))
        out.append(decoded)
        size += len(decoded)
        last = end
    if not regions:
        return None
    out.append(data[last:])
    table = struct.pack(">I", len(regions)) + b"".join(_REGION.pack(*r) for r in regions)
    return table + b"".join(out)


def _block_at(data: bytes, start: int) -> tuple[int, bytes, int] | None:
    """The base64 block that starts at ``start``: (its end, the decoded bytes, its line
    width), or None when what is there would not re-encode to the same bytes.

    The quick way first, in C: the block compose/mime.py writes runs up to the
    boundary that closes its part. Anything else (a blank line, text after the block)
    is found line by line."""
    eol = data.find(b"\r\n", start)
    width = eol - start
    if eol < 0 or width < 4 or width % 4:
        return None
    # the delimiter is CRLF "--boundary"; the block's own last CRLF comes before it
    stop = data.find(b"\r\n--", eol)
    end = len(data) if stop < 0 else stop if data[stop - 2 : stop] == b"\r\n" else stop + 2
    decoded = _decoded(data[start:end], width)
    if decoded is not None:
        return end, decoded, width
    match = _BASE64_BLOCK.match(data, start)
    if match is None:
        return None
    decoded = _decoded(match.group(0), width)
    return None if decoded is None else (match.end(), decoded, width)


def _decoded(block: bytes, width: int) -> bytes | None:
    """The bytes ``block`` (base64 lines of ``width``, each ending CRLF) encodes, if
    encoding them again gives exactly ``block``."""
    try:
        decoded = binascii.a2b_base64(block.replace(b"\r\n", b""), strict_mode=True)
    except binascii.Error:
        return None
    return decoded if _base64_lines(decoded, width) == block else None


def rebase64(stream: bytes) -> bytes:
    """The inverse of :func:`unbase64`."""
    (count,) = struct.unpack_from(">I", stream)
    body = memoryview(stream)[4 + count * _REGION.size :]
    out: list[bytes] = []
    last = 0
    for i in range(count):
        start, length, width = _REGION.unpack_from(stream, 4 + i * _REGION.size)
        out.append(bytes(body[last:start]))
        out.append(_base64_lines(bytes(body[start : start + length]), width))
        last = start + length
    out.append(bytes(body[last:]))
    return b"".join(out)


def _base64_lines(decoded: bytes, width: int) -> bytes:
    encoded = binascii.b2a_base64(decoded, newline=False)
    if not encoded:
        return b""
    lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
    return b"\r\n".join(lines) + b"\r\n"


def training_sample(data: bytes) -> bytes:
    """What a dictionary learns from: the form bodies are compressed in."""
    stream = unbase64(data)
    return data if stream is None else stream


def train(samples: Sequence[bytes]) -> bytes | None:
    """A dictionary from raw bodies (``None``: too few or too alike to train on)."""
    return train_stored([(trainer.STREAM, training_sample(s)) for s in samples], {})


#: seconds a training may take before it is given up (it takes 0.05–1.5 s)
TRAIN_TIMEOUT = 120.0


def train_stored(
    samples: Sequence[tuple[int, bytes]], dictionaries: Mapping[int, bytes]
) -> bytes | None:
    """A dictionary from samples as :mod:`.trainer` takes them — stored frames (their
    dictionaries in ``dictionaries``) or streams — trained in a short-lived process at
    the lowest CPU priority; in this one when no process can be started.

    Not a thread of this process at low priority: it would hold the GIL while the
    scheduler starves it. And not the decompressing here either (see :mod:`.trainer`)."""
    payload = trainer.request(DICT_SIZE, dictionaries, samples)
    try:
        done = subprocess.run(
            [sys.executable, "-I", trainer.__file__],
            input=payload,
            capture_output=True,
            timeout=TRAIN_TIMEOUT,
            check=True,
        )
        data = done.stdout
    except (OSError, subprocess.SubprocessError) as exc:  # no process to be had: here
        log.info("training in a process of its own failed (%s); training here", exc)
        data = trainer.answer(payload)
    if not data:
        log.info("no body dictionary from %d samples", len(samples))
        return None
    return data


# --- encoding and decoding -------------------------------------------------------------


class _Dictionary:
    """One trained dictionary with a compressor and decompressor per thread (zstd's
    objects are not for concurrent use)."""

    def __init__(self, ident: int, data: bytes) -> None:
        self.ident = ident
        self.data = data
        self.dict = zstandard.ZstdCompressionDict(data)
        self.dict.precompute_compress(level=LEVEL)
        self._local = threading.local()

    def compressor(self) -> zstandard.ZstdCompressor:
        c: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(
                dict_data=self.dict, write_checksum=False, write_dict_id=False
            )
        return c

    def decompressor(self) -> zstandard.ZstdDecompressor:
        d: zstandard.ZstdDecompressor | None = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor(dict_data=self.dict)
        return d


_PLAIN_CODECS = threading.local()


def _plain_compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_PLAIN_CODECS, "c", None)
    if c is None:
        c = _PLAIN_CODECS.c = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
    return c


def _plain_decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_PLAIN_CODECS, "d", None)
    if d is None:
        d = _PLAIN_CODECS.d = zstandard.ZstdDecompressor()
    return d


def pack(data: bytes, dictionary: _Dictionary | None) -> bytes:
    """The stored value of ``data`` (:func:`unpack` gives ``data`` back)."""
    return _packed(data, dictionary)[0]


def _packed(data: bytes, dictionary: _Dictionary | None) -> tuple[bytes, bytes]:
    """The stored value and the stream its frame holds (``data`` with its base64
    blocks decoded, which :func:`unbase64` only does where they encode back exactly)."""
    stream = unbase64(data)
    transform = _PLAIN if stream is None else _UNBASE64
    source = data if stream is None else stream
    compressor = _plain_compressor() if dictionary is None else dictionary.compressor()
    ident = 0 if dictionary is None else dictionary.ident
    return _HEAD.pack(0, _FORMAT, transform, ident) + compressor.compress(source), source


def dictionary_of(blob: bytes) -> int | None:
    """The dictionary a stored value needs (``None``: none, or a raw legacy body)."""
    if not blob.startswith(b"\x00") or len(blob) < _HEAD.size:
        return None
    return _HEAD.unpack_from(blob)[3] or None


def unpack(blob: bytes, dictionary: Callable[[int], _Dictionary]) -> bytes:
    """The bytes a stored value holds; a value without the header is a raw body."""
    if not blob.startswith(b"\x00"):
        return blob
    _, fmt, transform, ident = _HEAD.unpack_from(blob)
    if fmt != _FORMAT or transform not in (_PLAIN, _UNBASE64):
        raise StorageError(f"stored body of an unknown format ({fmt}.{transform})")
    try:
        stream = _stream_of(blob, dictionary(ident) if ident else None)
    except zstandard.ZstdError as exc:
        raise StorageError(f"stored body does not decompress: {exc}") from exc
    return rebase64(stream) if transform == _UNBASE64 else stream


def _stream_of(blob: bytes, dictionary: _Dictionary | None) -> bytes:
    """The stream a stored value's frame holds (before the base64 transform is undone)."""
    codec = _plain_decompressor() if dictionary is None else dictionary.decompressor()
    return bytes(codec.decompress(blob[_HEAD.size :]))


class Bodies(StoreBase):
    """Writes and reads of ``outbox_bodies`` and the brands' dictionaries. Every writer
    calls :meth:`encode_body` and every reader :meth:`_decode_body`."""

    #: bodies of a brand stored without a dictionary before one is trained (this process)
    train_after = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dicts: dict[int, _Dictionary] = {}
        self._current: dict[str, tuple[int, int]] = {}  # brand → (dictionary id, samples)
        self._dicts_seen = 0  # the highest dictionary id loaded into _current
        self._since_training: Counter[str] = Counter()
        self._dict_lock = threading.Lock()
        self._trainer: threading.Thread | None = None
        self._closing = False
        self._refresh_at = 0.0

    # --- the one way in and out ---------------------------------------------------

    def encode_body(self, brand: str, data: bytes) -> StoredBody:
        """The stored value of the exact bytes ``data`` of a message of ``brand``,
        compressed with the brand's newest dictionary. Checked by decoding it: a value
        that would not give ``data`` back is never written (it is then stored plain)."""
        current = self._current.get(brand)
        dictionary = self._dicts.get(current[0]) if current else None
        blob, source = _packed(data, dictionary)
        # the frame must give back the stream exactly (the stream gives back ``data``:
        # unbase64 keeps only blocks that encode back to the same bytes)
        if _stream_of(blob, dictionary) != source:  # pragma: no cover - a zstd bug
            log.error("a compressed body did not decode to its bytes; stored uncompressed")
            return StoredBody(data, None)
        return StoredBody(blob, None if dictionary is None else dictionary.ident)

    def encode_bodies(
        self, cur: Cursor | None, items: Sequence[tuple[str, bytes]]
    ) -> list[StoredBody]:
        """:meth:`encode_body` for (brand, bytes) pairs, after catching up (every
        ``REFRESH`` seconds) with the dictionaries other processes trained (``cur``: a
        transaction to read them in, or ``None`` for a short one of its own)."""
        if time.monotonic() >= self._refresh_at:
            self._refresh_dictionaries(cur)
        return [self.encode_body(brand, data) for brand, data in items]

    def _decode_body(self, cur: Cursor, blob: bytes) -> bytes:
        """The exact bytes of a stored value (``cur`` reads a dictionary not yet
        loaded)."""
        ident = dictionary_of(blob)
        if ident is not None and ident not in self._dicts:
            self._load_dictionary(cur, ident)
        return unpack(blob, self._dicts.__getitem__)

    def _training_sample(self, cur: Cursor, blob: bytes) -> tuple[int, bytes]:
        """A stored value as :mod:`.trainer` takes it: the frame and its dictionary id
        (loaded here if need be), left for the trainer to decompress to the stream a
        dictionary learns from; a legacy raw body as its stream."""
        if not blob.startswith(b"\x00"):
            return trainer.STREAM, training_sample(blob)
        _, fmt, transform, ident = _HEAD.unpack_from(blob)
        if fmt != _FORMAT or transform not in (_PLAIN, _UNBASE64):
            raise StorageError(f"stored body of an unknown format ({fmt}.{transform})")
        if ident and ident not in self._dicts:
            self._load_dictionary(cur, ident)
        return (ident or trainer.PLAIN), blob[_HEAD.size :]

    def _decode_bodies(self, blobs: Sequence[bytes]) -> list[bytes]:
        """:meth:`_decode_body` outside a transaction (a claim decodes after its
        commit: the write lock is not held for it); a short read only when a
        dictionary is not loaded yet."""
        missing = {dictionary_of(b) for b in blobs} - {None} - set(self._dicts)
        if missing:
            with self.transaction(write=False) as cur:
                for ident in sorted(i for i in missing if i is not None):
                    self._load_dictionary(cur, ident)
        return [unpack(b, self._dicts.__getitem__) for b in blobs]

    def _insert_bodies(self, cur: Cursor, rows: Sequence[tuple[int, str, StoredBody]]) -> None:
        """Insert (message id, brand, stored body) rows; may start training."""
        cur.many(
            "INSERT INTO outbox_bodies (message, data, dictionary) VALUES (?, ?, ?)",
            [(i, b.data, b.dictionary) for i, _, b in rows],
        )
        for _, brand, _ in rows:
            self._since_training[brand] += 1

    # --- dictionaries -------------------------------------------------------------

    def _refresh_dictionaries(self, cur: Cursor | None) -> None:
        def read(c: Cursor) -> list[tuple[Any, ...]]:
            return c.execute(
                "SELECT id, brand, samples, data FROM outbox_body_dicts WHERE id > ? ORDER BY id",
                [self._dicts_seen],
            ).fetchall()

        if cur is None:
            with self.transaction(write=False) as own:
                rows = read(own)
        else:
            rows = read(cur)
        self._refresh_at = time.monotonic() + REFRESH
        for ident, brand, samples, data in rows:
            self._add_dictionary(int(ident), bytes(data))
            self._current[str(brand)] = (int(ident), int(samples))
            self._dicts_seen = max(self._dicts_seen, int(ident))

    def _load_dictionary(self, cur: Cursor, ident: int) -> None:
        row = cur.execute("SELECT data FROM outbox_body_dicts WHERE id = ?", [ident]).fetchone()
        if row is None:
            raise StorageError(f"body dictionary {ident} is missing")
        self._add_dictionary(ident, bytes(row[0]))

    def _add_dictionary(self, ident: int, data: bytes) -> None:
        if ident not in self._dicts:
            self._dicts[ident] = _Dictionary(ident, data)

    def _due_for_training(self) -> list[str]:
        due = []
        for brand, count in self._since_training.items():
            samples = self._current.get(brand, (0, 0))[1]
            if samples == 0:
                threshold = self.train_after
            elif samples < MAX_SAMPLES:
                threshold = samples * 4
            else:
                threshold = RETRAIN_EVERY
            if count >= threshold:
                due.append(brand)
        return due

    def _maybe_train(self) -> None:
        """Start training the brands that are due, on a thread of its own: never in
        the transaction that stores mail."""
        due = self._due_for_training()
        if not due or self._closing:
            return
        with self._dict_lock:
            if self._trainer is not None and self._trainer.is_alive():
                return
            for brand in due:
                self._since_training[brand] = 0
            self._trainer = threading.Thread(
                target=self._train_in_background, args=(due,), name="body-dicts", daemon=True
            )
            self._trainer.start()

    def _train_in_background(self, brands: list[str]) -> None:
        try:
            for brand in brands:
                if self._closing:
                    return
                self.train_body_dictionary(brand)
        except Exception:
            log.warning("training body dictionaries failed", exc_info=True)
        finally:
            self._drop_conn()

    def train_body_dictionary(self, brand: str, samples: int = MAX_SAMPLES) -> int | None:
        """Train a dictionary on ``brand``'s newest bodies and store it; its id, or
        ``None`` when there is too little to train on. Reading and training run
        outside any write transaction; the insert is one short one."""
        with self.transaction(write=False) as cur:
            # newest first along the primary key; ``|| ''`` keeps the brand index out
            # of it (it would visit every message the brand ever had)
            rows = cur.execute(
                "SELECT b.data FROM outbox_messages m JOIN outbox_bodies b ON b.message = m.id "
                "WHERE m.brand || '' = ? ORDER BY m.id DESC LIMIT ?",
                [brand, samples],
            ).fetchall()
            stored = [self._training_sample(cur, bytes(r[0])) for r in rows]
            needed = {kind for kind, _ in stored} - {trainer.STREAM, trainer.PLAIN}
            dictionaries = {i: self._dicts[i].data for i in sorted(needed)}
        data = train_stored(stored, dictionaries)
        if data is None:
            return None
        with self.transaction() as cur:
            row = cur.execute(
                "INSERT INTO outbox_body_dicts (brand, samples, created_at, data) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                [brand, len(stored), self.clock(), data],
            ).fetchone()
        assert row is not None
        ident = int(row[0])
        self._add_dictionary(ident, data)
        log.info("body dictionary %d for brand %s (%d samples)", ident, brand, len(stored))
        self._refresh_dictionaries(None)
        return ident

    def wait_for_training(self, timeout: float | None = None) -> None:
        """Wait until a running training has finished (tests, benchmarks, close)."""
        running = self._trainer
        if running is not None:
            running.join(timeout)

    def close(self) -> None:
        self._closing = True
        self.wait_for_training(30)
        super().close()
        self._closing = False
