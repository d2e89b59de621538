"""pytest plugin: loopback SMTP, DNS and TLS fixtures for the delivery and worker tests.

Loaded by ``tests/conftest.py`` (``pytest_plugins``), so every test directory
(``tests/delivery``, ``tests/worker``, ...) can use them. Fixtures:

``smtp_server``
    an aiosmtpd :class:`tests.smtpd.SMTPTestServer` on 127.0.0.1 and a free port
    (advertising PIPELINING when the ``smtp_pipelining`` fixture says so), with
    the faults of the test's ``@pytest.mark.smtp_fault(AT, REPLY, action=..., delay=...,
    times=..., skip=...)`` markers (see ``tests/smtpd.py``), e.g.::

        @pytest.mark.smtp_fault("RCPT", "451 4.3.0 Try again later")
        @pytest.mark.smtp_fault("DOT", action="disconnect")

``smtp_server_factory``
    starts further servers (TLS, AUTH, other addresses); all stopped after the test.
``tls_files``
    a self-signed certificate for localhost/127.0.0.1 (cert, key, server contexts).
``dnsmasq``
    starts a loopback dnsmasq with the given records; returns its "127.0.0.1:PORT".
``smtp_sink``
    starts Postfix's smtp-sink with the given fault flags; skips when not installed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from tests.smtpd import Fault, SMTPTestServer

SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None
)
DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
)


def _missing(what: str) -> None:
    """A real server the tests need is missing: a failure in CI (scripts/test installs
    it), a skip on a developer's machine without it."""
    if os.environ.get("CI"):
        pytest.fail(what + " — CI must install it (scripts/test does)")
    pytest.skip(what)


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _faults(node: pytest.Item) -> list[Fault]:
    faults = []
    for mark in node.iter_markers("smtp_fault"):
        at, *rest = mark.args
        options = dict(mark.kwargs)
        reply = rest[0] if rest else options.pop("reply", None)
        faults.append(Fault(at, reply, **options))
    faults.reverse()  # markers come nearest-first; keep them in source order
    return faults


@pytest.fixture
def smtp_pipelining() -> bool:
    """Whether ``smtp_server`` advertises PIPELINING; a module overrides this fixture
    (e.g. parametrized) to run its tests on both paths of the client."""
    return False


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest, smtp_pipelining: bool) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer(_faults(request.node), pipelining=smtp_pipelining)
    with server:
        yield server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SMTPTestServer]]:
    started: list[SMTPTestServer] = []

    def make(*faults: Fault, **kwargs: object) -> SMTPTestServer:
        server = SMTPTestServer(faults, **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# ----------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSFiles(cert_path, key_path)


# ----------------------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``dnsmasq("--mx-host=a.test,mx.a.test,10", ...)`` → "127.0.0.1:PORT".

    Authoritative for ``.test`` (unknown names there are NXDOMAIN), no upstream (other
    names are REFUSED, which the resolver reports like SERVFAIL). As root dnsmasq drops
    to ``nobody`` by itself; a port above 1024 and no pid file need no ``--user=root``.
    """
    if DNSMASQ is None:
        _missing("dnsmasq not installed (Debian package dnsmasq-base)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*records: str) -> str:
        for _ in range(5):
            port = free_port(socket.SOCK_DGRAM)
            log = tmp_path / f"dnsmasq-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        str(DNSMASQ),
                        "--no-daemon",
                        "--no-resolv",
                        "--no-hosts",
                        "--pid-file=",
                        f"--port={port}",
                        "--listen-address=127.0.0.1",
                        "--bind-interfaces",
                        "--local=/test/",
                        "--log-queries",
                        *records,
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            if _dns_ready(port, proc):
                return f"127.0.0.1:{port}"
            _stop(proc)
        raise RuntimeError(f"dnsmasq did not start: {log.read_text(errors='replace')}")

    yield start
    for proc in procs:
        _stop(proc)


def _dns_ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 0.5
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            resolver.resolve("ready.probe.test", "A")
        except dns.resolver.NXDOMAIN:
            return True  # answered
        except dns.exception.DNSException:
            time.sleep(0.05)
            continue
        return True
    return False


@dataclass
class SmtpSink:
    port: int
    dump_dir: Path

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def dumped(self) -> list[Path]:
        return sorted(p for p in self.dump_dir.rglob("*") if p.is_file())


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., SmtpSink]]:
    """``smtp_sink("-r", "RCPT")`` → Postfix's smtp-sink on 127.0.0.1 with those flags.

    Each transaction is dumped to a file under ``dump_dir`` (``-d``), so tests can
    count what the sink accepted.
    """
    if SMTP_SINK is None:
        _missing("smtp-sink not installed (Debian package postfix)")
    procs: list[subprocess.Popen[bytes]] = []
    dumps: list[Path] = []

    def start(*flags: str) -> SmtpSink:
        # smtp-sink writes as "nobody", who cannot enter pytest's 0700 tmp_path
        dump = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        dumps.append(dump)
        dump.chmod(0o777)
        for _ in range(5):
            port = free_port()
            proc = subprocess.Popen(
                [
                    str(SMTP_SINK),
                    "-u",
                    "nobody",
                    "-d",
                    f"{dump}/%H%M%S.",
                    *flags,
                    f"127.0.0.1:{port}",
                    "100",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            if _tcp_ready(port, proc):
                return SmtpSink(port, dump)
            _stop(proc)
        raise RuntimeError("smtp-sink did not start")

    yield start
    for proc in procs:
        _stop(proc)
    for dump in dumps:
        shutil.rmtree(dump, ignore_errors=True)


def _tcp_ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.recv(1)  # wait for the first byte of the greeting
                return True
        except OSError:
            time.sleep(0.05)
    return False
