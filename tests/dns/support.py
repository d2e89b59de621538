"""A real dnsmasq on loopback whose records a test changes between checks, and a copy of
the shipped brands with their keys, for the DNS verification tests.

dnsmasq reads ``--txt-record`` and ``--cname`` only at start (SIGHUP re-reads host files,
not these), so :meth:`Zone.publish` writes a new configuration file and restarts it on
the same port: a check after ``publish`` sees the new records.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from notifier.brands import Brand, BrandRegistry
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.signing.keys import KeyStore
from tests.conftest_smtp import DNSMASQ, _missing

SPF_OK = "v=spf1 include:_spf.nordname.com -all"
LINK_IP = "192.0.2.10"


def _txt(name: str, value: str) -> str:
    """A dnsmasq TXT line: the record's strings comma-separated (≤ 255 bytes each)."""
    assert "," not in value
    parts = [value[i : i + 255] for i in range(0, len(value), 255)]
    return f"txt-record={name}," + ",".join(parts)


def records(
    brand: Brand, keys: KeyStore, *, dkim: bool = True, spf: str = SPF_OK, other_key: bool = False
) -> list[str]:
    """dnsmasq lines publishing what ``brand`` needs: DKIM (or none, or another key's),
    SPF on its bounce domain, DMARC and the link-domain CNAME."""
    lines = [f"local=/{brand.mail_domain}/"]
    for sel in brand.dkim:
        if dkim:
            value = keys.record(brand, sel.name).value
            if other_key:  # a record that is there but is not our key
                value = value.replace("p=", "p=AAAA", 1)
            lines.append(_txt(f"{sel.name}._domainkey.{brand.mail_domain}", value))
    lines.append(_txt(brand.envelope_domain, spf))
    lines.append(_txt(f"_dmarc.{brand.mail_domain}", "v=DMARC1; p=none"))
    lines.append(f"cname={brand.link_host},links.nordname.com")
    return lines


class Zone:
    """One dnsmasq on a fixed loopback port; :meth:`publish` replaces its records."""

    def __init__(self, root: Path) -> None:
        if DNSMASQ is None:
            _missing("dnsmasq not installed (Debian package dnsmasq-base)")
        self.root = root
        #: fixed for the zone's life: settings made before a restart stay right
        self.port = free_port_both()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, *lines: str) -> None:
        """Serve exactly ``lines`` (dnsmasq options without the ``--``) from now on."""
        conf = self.root / f"dnsmasq-{self.restarts}.conf"
        conf.write_text("\n".join([f"host-record=links.nordname.com,{LINK_IP}", *lines]) + "\n")
        self.restarts += 1
        self.stop()
        for _ in range(5):
            log = (self.root / "dnsmasq.log").open("ab")
            self.proc = subprocess.Popen(
                [
                    str(DNSMASQ),
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--pid-file=",
                    f"--port={self.port}",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    f"--conf-file={conf}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            if self._ready():
                return
            self.stop()
            time.sleep(0.2)  # e.g. the old process's socket not released yet
        raise RuntimeError(f"dnsmasq did not start: {(self.root / 'dnsmasq.log').read_text()}")

    def _ready(self) -> bool:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 0.5
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                resolver.resolve("links.nordname.com", "A")
                return True
            except dns.exception.DNSException:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def free_port_both() -> int:
    """A port free for both UDP and TCP: dnsmasq serves both. The UDP port the kernel
    picks may be taken for TCP (another test's server), so try again then."""
    for _ in range(50):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


@dataclass
class World:
    """The shipped brands (copied), their keys, and the zone that serves their DNS."""

    root: Path
    brands_dir: Path
    key_dir: Path
    keys: KeyStore
    registry: BrandRegistry
    zone: Zone

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "var_dir": self.root / "var",
            "key_dir": self.key_dir,
            "brands_dir": self.brands_dir,
            "secret_key": Secret("test-secret"),
            "dns_nameserver": self.zone.nameserver,
            "dns_timeout": 2.0,
            "dns_refresh": 0.05,
            **overrides,
        }
        return Settings.model_validate(values)

    def brand(self, brand_id: str) -> Brand:
        return self.registry.get(brand_id)

    def publish(self, **state: dict[str, object] | None) -> None:
        """``publish(acme={}, kustwebb={"dkim": False})``: each named brand's records
        (``None``: nothing at all for it)."""
        lines: list[str] = []
        for brand_id, options in state.items():
            brand = self.brand(brand_id)
            if options is None:
                lines.append(f"local=/{brand.mail_domain}/")
            else:
                lines += records(brand, self.keys, **options)  # type: ignore[arg-type]
        self.zone.publish(*lines)


@pytest.fixture(scope="session")
def dns_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys for every shipped brand's selectors, made once."""
    key_dir = tmp_path_factory.mktemp("dns-keys")
    keys = KeyStore(key_dir)
    for brand in BrandRegistry(PROJECT_ROOT / "brands", "nordname").all():
        for sel in brand.dkim:
            keys.generate(brand, sel.name, sel.algorithm)
    return key_dir


@pytest.fixture
def world(tmp_path: Path, dns_key_dir: Path) -> Iterator[World]:
    brands_dir = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands_dir)
    registry = BrandRegistry(brands_dir, "nordname")
    keys = KeyStore(dns_key_dir)
    key_dir = dns_key_dir
    zone = Zone(tmp_path)
    try:
        yield World(tmp_path, brands_dir, key_dir, keys, registry, zone)
    finally:
        zone.stop()
