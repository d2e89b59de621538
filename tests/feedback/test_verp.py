"""VERP addresses: one per message on the signer's bounce domain, with a MAC that a
forger cannot produce and MTAs' case changes do not break."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from notifier.errors import StorageError
from notifier.feedback.verp import SECRET_FILE, Verp, load_secret

SECRET = b"0123456789abcdef0123456789abcdef"


def test_round_trip_and_case_folding() -> None:
    verp = Verp(SECRET)
    address = verp.address(42, "bounce.acme.fi")
    assert address.startswith("b-42-") and address.endswith("@bounce.acme.fi")
    assert verp.check(address).message == 42
    assert verp.check(address.upper()).message == 42  # an MTA upper-casing the local part
    assert verp.envelope_sender(42, "bounces@bounce.acme.fi") == address


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a: a.replace("b-42-", "b-43-"),  # the MAC of another message
        lambda a: a.replace("@bounce.acme.fi", "@studs.kustwebb.fi"),  # another domain
        lambda a: (
            a[: a.index("@") - 1] + ("a" if a[a.index("@") - 1] != "a" else "b") + a[a.index("@") :]
        ),
        lambda a: a.split("-")[0] + "-42-" + "@bounce.acme.fi",
    ],
)
def test_tampered_addresses_are_forged(tamper: object) -> None:
    verp = Verp(SECRET)
    address = tamper(verp.address(42, "bounce.acme.fi"))  # type: ignore[operator]
    match = verp.check(address)
    assert match.message is None
    assert match.forged or not address.split("@")[0].split("-")[-1]


def test_other_keys_do_not_verify() -> None:
    address = Verp(SECRET).address(42, "bounce.acme.fi")
    assert Verp(b"another secret of 32 bytes......").check(address).forged


def test_plain_addresses_are_neither() -> None:
    match = Verp(SECRET).check("bounces@bounce.acme.fi")
    assert (match.message, match.forged) == (None, False)


def test_secret_made_once_private_and_shared(tmp_path: Path) -> None:
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_secret(tmp_path / "keys")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results[0]) >= 32
    mode = stat.S_IMODE((tmp_path / "keys" / SECRET_FILE).stat().st_mode)
    assert mode == 0o600


def test_short_secret_refused(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(b"short")
    with pytest.raises(StorageError, match="too short"):
        load_secret(tmp_path)
