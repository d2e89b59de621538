"""Key store: file layout and modes, no overwrite, the DNS record, and ``dkim keygen``."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from typer.testing import CliRunner

from notifier.brands import Brand
from notifier.cli.dkim import dkim_app
from notifier.errors import KeyStoreError
from notifier.signing.keys import DNSRecord, KeyStore


def make_brand(**overrides: Any) -> Brand:
    data: dict[str, Any] = {
        "id": "acme",
        "name": "Acme Digital",
        "legal_name": "Acme Digital Oy",
        "address": ["Hämeenkatu 20 A", "33200 Tampere"],
        "from_address": "verkkotunnukset@acme.fi",
        "sending_domain": "acme.fi",
        "link_domain": "domain.acme.fi",
        "logo_url": "https://domain.acme.fi/logo.png",
        "support": {"email": "tuki@acme.fi"},
        "dkim": [{"name": "acme2026a", "algorithm": "rsa", "active": True}],
    }
    data.update(overrides)
    return Brand.model_validate(data)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def _p(record: DNSRecord) -> bytes:
    tags = dict(part.strip().split("=", 1) for part in record.value.split(";"))
    return base64.b64decode(tags["p"])


def test_rsa_key_file_layout_and_modes(store: KeyStore) -> None:
    brand = make_brand()
    store.generate(brand, "acme2026a")
    path = store.directory / "acme" / "acme2026a.pem"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["acme2026a.pem"]  # no temp file left
    assert store.selectors("acme") == ["acme2026a"]


def test_rsa_record_is_published_form_of_the_key(store: KeyStore) -> None:
    brand = make_brand()
    record = store.generate(brand, "acme2026a")
    assert record.name == "acme2026a._domainkey.acme.fi"
    assert record.type == "TXT"
    assert record.value.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(_p(record))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    key = store.load("acme", "acme2026a")
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    assert public.public_numbers() == key.private_key.public_key().public_numbers()


def test_record_is_split_into_255_byte_strings(store: KeyStore) -> None:
    record = store.generate(make_brand(), "big", bits=3072)
    assert len(record.value) > 510
    assert len(record.strings) == 3
    assert all(len(s.encode()) <= 255 for s in record.strings)
    assert "".join(record.strings) == record.value
    assert record.presentation == " ".join(f'"{s}"' for s in record.strings)
    assert record.zone_line() == f"big._domainkey.acme.fi. IN TXT {record.presentation}"
    assert record.record_json() == {
        "name": "big._domainkey.acme.fi",
        "type": "TXT",
        "value": record.presentation,
    }


def test_ed25519_record_has_raw_32_byte_key(store: KeyStore) -> None:
    brand = make_brand(dkim=[{"name": "ed1", "algorithm": "ed25519"}])
    record = store.generate(brand, "ed1", algorithm="ed25519")
    assert record.value.startswith("v=DKIM1; k=ed25519; p=")
    raw = _p(record)
    assert len(raw) == 32
    key = store.load("acme", "ed1")
    assert key.algorithm == "ed25519"
    assert isinstance(key.private_key, ed25519.Ed25519PrivateKey)
    assert key.matches(base64.b64encode(raw).decode())


def test_refuses_to_overwrite(store: KeyStore) -> None:
    brand = make_brand()
    store.generate(brand, "acme2026a")
    path = store.path("acme", "acme2026a")
    before = path.read_bytes()
    with pytest.raises(KeyStoreError, match="already exists"):
        store.generate(brand, "acme2026a")
    with pytest.raises(KeyStoreError, match="already exists"):
        KeyStore(store.directory).generate(brand, "acme2026a", algorithm="rsa")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selector": "../escape"}, "invalid selector"),
        ({"selector": "Upper"}, "invalid selector"),
        ({"selector": "s1", "bits": 1024}, "RFC 8301"),
        ({"selector": "s1", "bits": 8192}, "RFC 8301"),
        ({"selector": "acme2026a", "algorithm": "ed25519"}, "lists selector"),
    ],
)
def test_bad_requests_are_refused(store: KeyStore, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KeyStoreError, match=message):
        store.generate(make_brand(), **kwargs)
    assert not list(store.directory.glob("*/*.pem"))


def test_load_is_cached_and_keys_stay_out_of_repr(store: KeyStore) -> None:
    store.generate(make_brand(), "acme2026a")
    pem = store.path("acme", "acme2026a").read_text()
    secret_line = pem.splitlines()[1]
    fresh = KeyStore(store.directory)
    first = fresh.load("acme", "acme2026a")
    assert fresh.load("acme", "acme2026a") is first
    for text in (repr(first), str(first), repr(fresh)):
        assert secret_line not in text
        assert "PRIVATE" not in text
    assert repr(first) == "DKIMKey(brand_id='acme', selector='acme2026a', algorithm='rsa')"


def test_missing_key_names_the_fix(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="notifier dkim keygen --brand acme --selector nope"):
        store.load("acme", "nope")


def test_unreadable_key_does_not_echo_contents(store: KeyStore) -> None:
    path = store.path("acme", "broken")
    path.parent.mkdir(parents=True)
    path.write_text(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyStoreError, match="not an unencrypted PEM") as info:
        store.load("acme", "broken")
    assert "c2VjcmV0" not in str(info.value)


def test_matches_accepts_spki_and_pkcs1_and_rejects_others(store: KeyStore) -> None:
    brand = make_brand()
    store.generate(brand, "acme2026a")
    store.generate(brand, "other")
    key = store.load("acme", "acme2026a")
    other = store.load("acme", "other")
    assert key.matches(base64.b64encode(key.public_bytes).decode())
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    pkcs1 = key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    assert key.matches(base64.b64encode(pkcs1).decode())
    assert not key.matches(base64.b64encode(other.public_bytes).decode())
    assert not key.matches("not base64 !!")
    assert not key.matches("")


# the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = tmp_path / "keys"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(keys))
    return keys


def _app() -> typer.Typer:
    """Mounted as the main CLI does it."""
    app = typer.Typer()
    app.add_typer(dkim_app, name="dkim")
    return app


def test_cli_keygen_json_then_refuse(cli_env: Path) -> None:
    runner = CliRunner()
    args = ["dkim", "keygen", "--brand", "acme", "--selector", "acme2027a", "--json"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"name", "type", "value", "zone_record"}
    assert doc["name"] == "acme2027a._domainkey.acme.fi"
    assert doc["value"].startswith("v=DKIM1; k=rsa; p=")  # plain, no zone-file quoting
    assert doc["zone_record"].startswith('acme2027a._domainkey.acme.fi. IN TXT "v=DKIM1; k=rsa; p=')
    assert (cli_env / "acme" / "acme2027a.pem").is_file()

    again = runner.invoke(_app(), args)
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert again.stdout == ""


def test_cli_keygen_human_output_never_shows_the_key(cli_env: Path) -> None:
    result = CliRunner().invoke(
        _app(),
        ["dkim", "keygen", "--brand", "acme", "--selector", "ed2027", "--algorithm", "ed25519"],
    )
    assert result.exit_code == 0, result.output
    assert "ed2027._domainkey.acme.fi. IN TXT" in result.stdout
    assert "k=ed25519" in result.stdout
    assert "PRIVATE" not in result.output
    pem = (cli_env / "acme" / "ed2027.pem").read_text().splitlines()[1]
    assert pem not in result.output


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        # the CLI's contract: 2 for a validation error, 1 when the key store refuses
        (["--brand", "nosuch", "--selector", "s1"], "--brand: unknown brand", 2),
        (["--brand", "acme", "--selector", "s1", "--bits", "512"], "RFC 8301", 1),
        (["--brand", "acme", "--selector", "a/b"], "invalid selector", 1),
    ],
)
def test_cli_keygen_errors(cli_env: Path, args: list[str], message: str, code: int) -> None:
    result = CliRunner().invoke(_app(), ["dkim", "keygen", *args])
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
