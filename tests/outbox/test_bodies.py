"""Stored bodies: zstd with a dictionary per brand, and the exact bytes back."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.outbox import Outbox, bodies, trainer
from notifier.outbox.bodies import dictionary_of, pack, rebase64, unbase64, unpack
from notifier.outbox.model import DAY, Delivery, Status
from tests.test_outbox import OK, Clock, FakeDNS, raw_event, signed_delivery

EVENTS = ("domain.renewal_reminder", "domain.registered", "domain.expired", "domain.renewed")


def mail(i: int, brand: str = "acme") -> dict[str, Any]:
    """Real rendered mail of several events and languages (distinct occasions)."""
    name = EVENTS[i % len(EVENTS)]
    lang = ("fi", "sv", "en")[i % 3]
    return raw_event(
        name,
        brand=brand,
        to=f"holder{i}@example.fi",
        lang=lang,
        domain=f"bodies-{i}.fi",
        **({"days_left": 30} if name == "domain.renewal_reminder" else {}),
    )


def body_rows(box: Outbox) -> dict[int, tuple[bytes, int | None]]:
    with box.transaction(write=False) as cur:
        rows = cur.execute("SELECT message, data, dictionary FROM outbox_bodies").fetchall()
    return {int(m): (bytes(d), None if k is None else int(k)) for m, d, k in rows}


def test_bodies_round_trip_exactly_before_and_after_a_dictionary(
    make_box: Callable[..., Any], clock: Clock, key_dir: Path, pipeline: Any
) -> None:
    box = make_box()
    box.outbox.train_after = 10**9  # trained by hand below
    first = [box.accept(mail(i)).id for i in range(40)]
    stored = body_rows(box)
    assert all(stored[i][1] is None and stored[i][0][:1] == b"\x00" for i in first)
    ident = box.train_body_dictionary("acme")
    assert ident is not None
    later = [box.accept(mail(i)).id for i in range(40, 60)]
    other = box.accept(mail(61, brand="kustwebb")).id
    stored = body_rows(box)
    assert {stored[i][1] for i in later} == {ident}
    assert stored[other][1] is None  # another brand: its own dictionary, none yet
    plain = sum(len(stored[i][0]) for i in first[:20]) / 20
    with_dict = sum(len(stored[i][0]) for i in later) / len(later)
    assert with_dict < plain / 2

    # a process that never saw the dictionary (a worker) reads it from the database
    reader = make_box()
    claims = reader.claim("w", 100)
    assert len(claims) == 61
    for claim in claims:
        record = reader.get(claim.id)
        assert hashlib.sha256(claim.data).hexdigest() == record.data_sha256
        assert record.data_sha256 == reader.raw(claim.id).sha256
    reader.complete("w", [signed_delivery(reader, c, key_dir, OK, clock.now) for c in claims])
    for i in (first[0], later[-1]):
        raw = box.raw(i)
        assert raw.signed and hashlib.sha256(raw.data).hexdigest() == box.get(i).sent_sha256
        assert dkim.verify(raw.data, dnsfunc=FakeDNS(key_dir, pipeline))


def test_a_brand_gets_a_dictionary_after_enough_mail(make_box: Callable[..., Any]) -> None:
    box = make_box()
    box.outbox.train_after = 16
    for i in range(15):
        box.accept(mail(i, brand="nordname"))
    box.wait_for_training()
    assert {k for _, k in body_rows(box).values()} == {None}
    box.accept_batch([mail(i, brand="nordname") for i in range(15, 20)])
    box.wait_for_training()
    with box.transaction(write=False) as cur:
        dicts = cur.execute("SELECT id, brand, samples FROM outbox_body_dicts").fetchall()
    assert [(str(b), int(n)) for _, b, n in dicts] == [("nordname", 20)]
    new = box.accept(mail(21, brand="nordname")).id
    assert body_rows(box)[new][1] == int(dicts[0][0])
    assert box.raw(new).sha256 == box.get(new).data_sha256


def _bodies(pipeline: Any, n: int) -> list[bytes]:
    return [pipeline.prepare(mail(i)).outgoing.data for i in range(n)]


def test_training_runs_in_a_process_at_the_lowest_priority_and_learns_the_same(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = _bodies(pipeline, 40)
    streams = [bodies.training_sample(s) for s in samples]
    size = min(bodies.DICT_SIZE, sum(len(s) for s in streams) // 8)
    here = zstandard.train_dictionary(size, streams, k=trainer.SEGMENT, d=trainer.DMER).as_bytes()
    started: list[list[str]] = []
    real_run = subprocess.run

    def run(argv: list[str], **kw: Any) -> Any:
        started.append(argv)
        return real_run(argv, **kw)

    monkeypatch.setattr(bodies.subprocess, "run", run)
    assert bodies.train(samples) == here  # zstd's training is deterministic
    assert len(started) == 1 and started[0][1:] == ["-I", trainer.__file__]
    # and the trainer does lower its priority: its own function, reporting it
    probe = (
        f"import os, sys; sys.path.insert(0, {str(Path(trainer.__file__).parent)!r}); "
        "import trainer; trainer.lowest_priority(); "
        "print(os.nice(0), os.sched_getscheduler(0) == os.SCHED_IDLE)"
    )
    out = real_run([sys.executable, "-I", "-c", probe], capture_output=True, check=True)
    assert out.stdout.split() == [b"19", b"True"]


def test_training_decompresses_stored_values_in_the_trainer_to_the_streams_it_learns(
    make_box: Callable[..., Any], pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server hands over stored values as they are (frames, with the dictionaries
    they need); the dictionary is the one trained on the bodies' streams."""
    box = make_box()
    box.outbox.train_after = 10**9
    box.accept_batch([mail(i) for i in range(20)])  # plain frames
    assert box.train_body_dictionary("acme") is not None
    box.accept_batch([mail(i) for i in range(20, 40)])  # frames with that dictionary
    sent: list[bytes] = []
    real_run = subprocess.run

    def run(argv: list[str], **kw: Any) -> Any:
        sent.append(kw["input"])
        return real_run(argv, **kw)

    monkeypatch.setattr(bodies.subprocess, "run", run)
    new = box.train_body_dictionary("acme")
    raw = {i: box.raw(i).data for i in body_rows(box)}
    streams = [bodies.training_sample(raw[i]) for i in sorted(raw, reverse=True)]
    size = min(bodies.DICT_SIZE, sum(len(s) for s in streams) // 8)
    with box.transaction(write=False) as cur:
        (data,) = cur.execute("SELECT data FROM outbox_body_dicts WHERE id = ?", [new]).fetchone()
    expected = zstandard.train_dictionary(size, streams, k=trainer.SEGMENT, d=trainer.DMER)
    assert bytes(data) == expected.as_bytes()
    # what went to the trainer: the stored frames, far smaller than the bodies
    assert len(sent) == 1 and len(sent[0]) < sum(len(b) for b in raw.values()) / 3


def test_training_falls_back_to_this_process_without_a_python_to_start(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = _bodies(pipeline, 40)
    expected = bodies.train(samples)
    monkeypatch.setattr(bodies.sys, "executable", "/nonexistent/python3")
    assert expected is not None and bodies.train(samples) == expected


def test_a_dictionary_is_kept_while_a_body_uses_it(
    make_box: Callable[..., Any], clock: Clock
) -> None:
    box = make_box()
    box.outbox.train_after = 10**9
    box.accept_batch([mail(i) for i in range(20)])
    old = box.train_body_dictionary("acme")
    kept = box.accept(mail(100)).id  # queued for ever: never purged
    sent = box.accept(mail(101)).id
    new = box.train_body_dictionary("acme")
    assert old is not None and new is not None and new > old
    newest = box.accept(mail(102)).id
    assert body_rows(box)[kept][1] == old and body_rows(box)[newest][1] == new
    for c in box.claim("w", 100):
        if c.id != kept:
            box.complete("w", [signed_delivery_ok(c.id)])
        else:
            box.release("w", [c.id])
    later = clock.now + box.config.retention + DAY
    box.purge(now=later)
    assert box.get(kept).status == Status.QUEUED
    assert _dictionaries(box) == {old, new}  # the queued message still needs the old one
    with box.transaction() as cur:  # its message is cancelled and old, so purged too
        cur.execute("UPDATE outbox_messages SET status = 'cancelled' WHERE id = ?", [kept])
    box.purge(now=later)
    assert _dictionaries(box) == {new}  # the newest of a brand stays, used or not
    assert sent not in body_rows(box)


def signed_delivery_ok(message: int) -> Delivery:
    return Delivery(message, Status.SENT, attempt=OK)


def _dictionaries(box: Outbox) -> set[int]:
    with box.transaction(write=False) as cur:
        return {int(r[0]) for r in cur.execute("SELECT id FROM outbox_body_dicts").fetchall()}


# --- the stored form --------------------------------------------------------------------


def _mime(html: bytes, width: int = 76) -> bytes:
    encoded = base64.b64encode(html)
    lines = b"".join(encoded[i : i + width] + b"\r\n" for i in range(0, len(encoded), width))
    return (
        b"Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + lines
        + b"--b--\r\n"
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.sampled_from([4, 64, 76, 80]))
def test_any_base64_block_comes_back_byte_for_byte(payload: bytes, width: int) -> None:
    data = _mime(payload, width)
    assert unpack(pack(data, None), lambda _: pytest.fail("no dictionary")) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_come_back(data: bytes) -> None:
    assert unpack(pack(data, None), lambda _: pytest.fail("no dictionary")) == data


def test_base64_that_would_not_re_encode_the_same_is_kept_as_it_is() -> None:
    # "QR==" decodes like "QQ==" (non-zero padding bits): decoding would lose the R
    block = b"QUJDRA" * 20 + b"\r\n"
    head = b"Content-Transfer-Encoding: base64\r\n\r\n"
    data = head + block * 3 + b"QR==\r\n" + b"end\r\n"
    assert unbase64(data) is None or rebase64(unbase64(data) or b"") == data
    stream = unbase64(head + block * 3 + b"QQ==\r\n")
    assert stream is not None and rebase64(stream) == head + block * 3 + b"QQ==\r\n"


def test_real_mail_is_stored_with_its_html_decoded(pipeline: Any) -> None:
    """The HTML part (base64 in the MIME) compresses as text."""
    from notifier.intake.preparer import new_message

    data = new_message(pipeline.prepare(mail(1))).data
    assert b"Content-Transfer-Encoding: base64" in data
    stream = unbase64(data)
    assert stream is not None and b"<html" in stream and rebase64(stream) == data
    blob = pack(data, None)
    assert dictionary_of(blob) is None and len(blob) < len(data) / 2


def test_a_body_written_before_compression_reads_as_it_is() -> None:
    data = b"From: a@example.fi\r\nSubject: old\r\n\r\nbody\r\n"
    assert unpack(data, lambda _: pytest.fail("no dictionary")) == data
