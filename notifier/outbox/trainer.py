"""Training a brand's body dictionary: the whole of it in a process of its own.

Training happens as a brand's mail grows (64, 256, 1,000 samples, then every 100,000
messages). With only zstd's training in a child process, the server's own share
(decompressing 1,000 stored bodies, putting their base64 back and taking it out
again, packing them) still took about 120 ms of its interpreter's CPU a training
(measured at 300 events/s on two cores), time in which the API's requests waited for
the GIL. So the server only reads the stored values and hands them over as they are;
this module, started as a script (``python -I trainer.py``, importing only the
standard library and ``zstandard``), takes the lowest CPU priority first, then
decompresses each value to the stream its frame holds — exactly what the dictionary
compresses later — and trains on those. The same functions run in the server's
process when no process can be started.

The request on stdin (big-endian): the largest dictionary size (u32), the number of
dictionaries (u32), each as id (u32), length (u32) and bytes, then the samples, each as
kind (u32: :data:`STREAM`, :data:`PLAIN` or a dictionary id), length (u32) and bytes.
The answer on stdout is the dictionary, or nothing when there is too little to learn.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Mapping, Sequence

import zstandard

#: zstd's fastCOVER with a fixed segment (``k``) and d-mer (``d``) size. Left at 0,
#: zstd searches for them (training several times over): on 1,000 of the shipped
#: brands' rendered bodies that took 204 ms of CPU and gave 294-byte messages on
#: average; these took 44 ms and gave 264 bytes (64 samples: 340 B against 955 B; 256:
#: 258 B against 300 B). Long shared stretches (layouts, footers) favour long segments.
SEGMENT = 16_000
DMER = 8
#: a sample that is already a stream (a legacy body stored raw, prepared by the caller)
STREAM = 0xFFFFFFFF
#: a zstd frame compressed without a dictionary
PLAIN = 0
_PAIR = struct.Struct(">II")


def request(
    max_size: int, dictionaries: Mapping[int, bytes], samples: Sequence[tuple[int, bytes]]
) -> bytes:
    """The request for :func:`answer`: ``samples`` are (kind, bytes) pairs."""
    parts = [_PAIR.pack(max_size, len(dictionaries))]
    for ident, data in dictionaries.items():
        parts += [_PAIR.pack(ident, len(data)), data]
    for kind, data in samples:
        parts += [_PAIR.pack(kind, len(data)), data]
    return b"".join(parts)


def answer(payload: bytes) -> bytes:
    """The dictionary for a :func:`request` (empty: too few or too alike samples)."""
    max_size, count = _PAIR.unpack_from(payload)
    pos = _PAIR.size
    decompressors = {PLAIN: zstandard.ZstdDecompressor()}
    for _ in range(count):
        ident, n = _PAIR.unpack_from(payload, pos)
        pos += _PAIR.size
        data = zstandard.ZstdCompressionDict(payload[pos : pos + n])
        decompressors[ident] = zstandard.ZstdDecompressor(dict_data=data)
        pos += n
    streams: list[bytes] = []
    view = memoryview(payload)
    while pos < len(payload):
        kind, n = _PAIR.unpack_from(payload, pos)
        pos += _PAIR.size
        value = view[pos : pos + n]
        pos += n
        if kind == STREAM:
            streams.append(bytes(value))
        else:
            streams.append(decompressors[kind].decompress(value))
    return train(max_size, streams)


def train(max_size: int, streams: Sequence[bytes]) -> bytes:
    """zstd's dictionary for these streams: an eighth of their size, at most
    ``max_size`` (empty: fewer than 8 samples, under 1 KiB, or nothing to learn)."""
    size = min(max_size, sum(len(s) for s in streams) // 8)
    if len(streams) < 8 or size < 1024:
        return b""
    try:
        return zstandard.train_dictionary(size, list(streams), k=SEGMENT, d=DMER).as_bytes()
    except zstandard.ZstdError:
        return b""


def lowest_priority() -> None:
    """Run only on CPU time nothing else wants: nice 19, and ``SCHED_IDLE`` where the
    platform has it (at nice 19 a process still has a small share of a busy CPU;
    ``SCHED_IDLE`` has less)."""
    os.nice(19)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def main() -> None:
    lowest_priority()
    sys.stdout.buffer.write(answer(sys.stdin.buffer.read()))


if __name__ == "__main__":
    main()
