"""DNS check against a real DNS server: dnsmasq on loopback, serving test zones.

dnsmasq (Debian package ``dnsmasq-base``) is required: CI installs it, and a missing
binary fails these tests rather than skipping them. Each brand below lives in its own
zone, marked ``--local`` so that dnsmasq answers NXDOMAIN for names it does not hold
(without it, dnsmasq refuses, which the check rightly reports as unknown).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import dns.resolver
import pytest
import typer
from typer.testing import CliRunner

from notifier.brands import Brand, BrandRegistry
from notifier.cli.dns import EXIT_FAIL, EXIT_UNKNOWN, dns_app
from notifier.config import PROJECT_ROOT, Settings
from notifier.dns.checks import Check, all_ok, check_brand, render_json, render_table
from notifier.signing.keys import KeyStore
from tests.dns.support import free_port_both

SPF_OK = "v=spf1 include:_spf.nordname.com -all"
LINK_IP = "192.0.2.10"
ZONES = ("good", "nodkim", "wrongkey", "twospf", "nodmarc", "noinclude", "byaddr", "orgdm")


def _toml(
    bid: str, *, sending: str | None = None, selectors: str = "s1", from_address: str | None = None
) -> str:
    domain = f"{bid}.fi"
    lines = [
        f'name = "{bid.title()}"',
        f'legal_name = "{bid.title()} Oy"',
        'address = ["Katu 1", "00100 Helsinki"]',
        f'from_address = "{from_address or "info@" + domain}"',
        f'sending_domain = "{sending or domain}"',
        f'bounce_domain = "bounce.{domain}"',
        f'link_domain = "links.{domain}"',
        f'logo_url = "https://links.{domain}/logo.png"',
        "[support]",
        f'email = "tuki@{domain}"',
    ]
    for sel in selectors.split(","):
        algo = "ed25519" if sel.startswith("e") else "rsa"
        lines += ["[[dkim]]", f'name = "{sel}"', f'algorithm = "{algo}"', "active = true"]
    return "\n".join(lines) + "\n"


@dataclass
class World:
    settings: Settings
    registry: BrandRegistry
    store: KeyStore
    brands_dir: Path
    key_dir: Path
    nameserver: str

    def brand(self, bid: str) -> Brand:
        return self.registry.get(bid)

    def check(self, bid: str, nameserver: str | None = None, timeout: float = 3.0) -> list[Check]:
        return check_brand(
            self.brand(bid),
            self.settings,
            self.store,
            nameserver=nameserver or self.nameserver,
            timeout=timeout,
        )


def _dnsmasq_binary() -> str:
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if not found:
        pytest.fail("dnsmasq not found: install the Debian package dnsmasq-base")
    return found


def _txt(name: str, value: str) -> str:
    """dnsmasq takes a TXT record's strings comma-separated (quotes would be kept literally)."""
    assert "," not in value
    parts = [value[i : i + 255] for i in range(0, len(value), 255)]
    return f"--txt-record={name}," + ",".join(parts)


def _zone_args(store: KeyStore, registry: BrandRegistry, other: KeyStore) -> list[str]:
    args = [f"--host-record=links.nordname.com,{LINK_IP}"]
    for bid in ZONES:
        brand = registry.get(bid)
        d = f"{bid}.fi"
        args.append(f"--local=/{d}/")
        for sel in brand.dkim:
            src = other if bid == "wrongkey" else store
            if bid != "nodkim":
                args.append(
                    _txt(
                        f"{sel.name}._domainkey.{brand.mail_domain}",
                        src.record(brand, sel.name).value,
                    )
                )
        if bid == "twospf":
            args.append(_txt(f"bounce.{d}", SPF_OK))
            args.append(_txt(f"bounce.{d}", "v=spf1 include:spf.other.example ~all"))
        elif bid == "noinclude":
            args.append(_txt(f"bounce.{d}", "v=spf1 mx ~all"))
        else:
            args.append(_txt(f"bounce.{d}", SPF_OK))
        args.append(_txt(f"bounce.{d}", "google-site-verification=abc"))  # not SPF: ignored
        if bid == "orgdm":
            args.append(_txt(f"_dmarc.{d}", "v=DMARC1; p=none; sp=reject"))
        elif bid != "nodmarc":
            args.append(_txt(f"_dmarc.{d}", "v=DMARC1; p=quarantine; rua=mailto:d@" + d))
        if bid == "byaddr":
            args.append(f"--host-record=links.{d},{LINK_IP}")
        else:
            args.append(f"--cname=links.{d},links.nordname.com")
    return args


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dns")
    brands_dir = root / "brands"
    brands_dir.mkdir()
    shutil.copy(PROJECT_ROOT / "brands" / "nordname.toml", brands_dir)
    for bid in ZONES:
        kwargs: dict[str, str] = {}
        if bid == "good":
            kwargs["selectors"] = "s1,e1"
        if bid == "orgdm":
            kwargs |= {"from_address": "info@mail.orgdm.fi", "sending_domain": "mail.orgdm.fi"}
        sending = kwargs.pop("sending_domain", None)
        (brands_dir / f"{bid}.toml").write_text(_toml(bid, sending=sending, **kwargs))
    settings = Settings(
        var_dir=root / "var",
        key_dir=root / "keys",
        brands_dir=brands_dir,
        link_addresses=(LINK_IP,),
    )
    registry = BrandRegistry(brands_dir, settings.platform_brand)
    store = KeyStore(settings.keys_path)
    other = KeyStore(root / "other-keys")
    for bid in ZONES:
        brand = registry.get(bid)
        for sel in brand.dkim:
            store.generate(brand, sel.name, sel.algorithm)
            if bid == "wrongkey":
                other.generate(brand, sel.name, sel.algorithm)

    binary = _dnsmasq_binary()
    zone_args = _zone_args(store, registry, other)
    log_path = root / "dnsmasq.log"
    for _attempt in range(5):
        port = free_port_both()
        cmd = [
            binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file",
            "--log-facility=-",
            *zone_args,
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        if _wait_ready(proc, port):
            break
        proc.wait()
    else:
        pytest.fail(f"dnsmasq did not start: {log_path.read_text()[-2000:]}")
    try:
        yield World(settings, registry, store, brands_dir, settings.keys_path, f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 0.5
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # e.g. the port was taken in between: try another
        try:
            resolver.resolve("bounce.good.fi", "TXT")
            return True
        except dns.exception.DNSException:
            time.sleep(0.05)
    proc.terminate()
    return False


def by_id(checks: list[Check]) -> dict[str, Check]:
    return {c.id: c for c in checks}


# the verdicts ---------------------------------------------------------------------------


def test_correct_setup_is_all_ok(world: World) -> None:
    checks = world.check("good")
    assert [c.id for c in checks] == [
        "dkim:s1",
        "dkim:e1",
        "spf",
        "dmarc",
        "align:dkim",
        "align:spf",
        "link",
    ]
    assert {c.id: c.status for c in checks} == dict.fromkeys(by_id(checks), "ok")
    assert all_ok(checks)
    found = by_id(checks)
    brand = world.brand("good")
    assert found["dkim:s1"].found == world.store.record(brand, "s1").value
    assert found["dkim:e1"].found == world.store.record(brand, "e1").value
    assert found["spf"].found == SPF_OK
    assert "quarantine" in found["dmarc"].message
    assert found["link"].found == "CNAME links.nordname.com"


def test_missing_dkim_record_fails_with_record_to_publish(world: World) -> None:
    checks = by_id(world.check("nodkim"))
    dkim = checks["dkim:s1"]
    assert dkim.status == "fail"
    assert dkim.found is None
    assert "no such name" in dkim.message
    assert dkim.expected == world.store.record(world.brand("nodkim"), "s1").zone_line()
    assert dkim.name == "s1._domainkey.nodkim.fi"
    assert all(c.status == "ok" for cid, c in checks.items() if cid != "dkim:s1")
    assert not all_ok(list(checks.values()))


def test_wrong_key_fails(world: World) -> None:
    dkim = by_id(world.check("wrongkey"))["dkim:s1"]
    assert dkim.status == "fail"
    assert dkim.message == "published key does not match the key store"
    brand = world.brand("wrongkey")
    assert dkim.found and dkim.found != world.store.record(brand, "s1").value
    assert dkim.expected == world.store.record(brand, "s1").zone_line()


def test_two_spf_records_fail(world: World) -> None:
    spf = by_id(world.check("twospf"))["spf"]
    assert spf.status == "fail"
    assert "2 SPF records" in spf.message
    assert spf.expected == (
        'bounce.twospf.fi. IN TXT "v=spf1 include:_spf.nordname.com include:spf.other.example ~all"'
    )  # the two disagreed on -all/~all: the merged record softfails


def test_spf_without_platform_include_fails(world: World) -> None:
    spf = by_id(world.check("noinclude"))["spf"]
    assert spf.status == "fail"
    assert spf.found == "v=spf1 mx ~all"
    assert spf.expected == 'bounce.noinclude.fi. IN TXT "v=spf1 include:_spf.nordname.com mx ~all"'


def test_no_dmarc_fails(world: World) -> None:
    dmarc = by_id(world.check("nodmarc"))["dmarc"]
    assert dmarc.status == "fail"
    assert dmarc.name == "_dmarc.nodmarc.fi"
    assert dmarc.expected == '_dmarc.nodmarc.fi. IN TXT "v=DMARC1; p=none; adkim=r; aspf=r"'


def test_dmarc_of_organisational_domain_and_subdomain_policy(world: World) -> None:
    checks = by_id(world.check("orgdm"))
    assert checks["dmarc"].status == "ok"
    assert checks["dmarc"].name == "_dmarc.orgdm.fi"
    assert "policy reject" in checks["dmarc"].message  # sp= applies to mail.orgdm.fi
    assert checks["dkim:s1"].name == "s1._domainkey.mail.orgdm.fi"
    assert checks["align:dkim"].status == "ok"
    assert checks["align:spf"].status == "ok"  # bounce.orgdm.fi vs mail.orgdm.fi: relaxed


def test_link_domain_by_address(world: World) -> None:
    link = by_id(world.check("byaddr"))["link"]
    assert link.status == "ok"
    assert link.found == LINK_IP
    settings = Settings(
        var_dir=world.settings.var_dir,
        key_dir=world.key_dir,
        brands_dir=world.brands_dir,
        link_addresses=("192.0.2.99",),
    )
    other = by_id(
        check_brand(
            world.brand("byaddr"), settings, world.store, nameserver=world.nameserver, timeout=3
        )
    )["link"]
    assert other.status == "fail"
    assert other.expected == (
        "links.byaddr.fi. IN CNAME links.nordname.com. (or A/AAAA: 192.0.2.99)"
    )


def test_misaligned_sending_domain_fails_alignment(world: World) -> None:
    brand = world.brand("good").model_copy(update={"sending_domain": "other.se"})
    checks = by_id(
        check_brand(brand, world.settings, world.store, nameserver=world.nameserver, timeout=3)
    )
    assert checks["align:dkim"].status == "fail"
    assert checks["align:dkim"].expected == "sending_domain in brands/good.toml: good.fi or below"
    # other.se is not one of dnsmasq's zones: it refuses, which is not a verdict
    assert checks["dkim:s1"].status == "unknown"


def test_neighbour_under_a_public_suffix_fails_alignment(world: World) -> None:
    # org.se is a public suffix (PSL): evil.org.se is not firma.org.se's organisation
    brand = world.brand("good").model_copy(
        update={
            "from_address": "info@firma.org.se",
            "sending_domain": "bounce.evil.org.se",
            "bounce_domain": "bounce.firma.org.se",
        }
    )
    checks = by_id(
        check_brand(brand, world.settings, world.store, nameserver=world.nameserver, timeout=3)
    )
    assert checks["align:dkim"].status == "fail"
    assert checks["align:dkim"].expected == (
        "sending_domain in brands/good.toml: firma.org.se or below"
    )
    assert checks["align:spf"].status == "ok"  # bounce.firma.org.se: relaxed


def test_inactive_selector_is_reported_but_not_required(world: World) -> None:
    brand = world.brand("nodkim")
    pending = brand.model_copy(
        update={"dkim": [brand.dkim[0].model_copy(update={"active": False})]}
    )
    checks = check_brand(
        pending, world.settings, world.store, nameserver=world.nameserver, timeout=3
    )
    dkim = by_id(checks)["dkim:s1"]
    assert dkim.status == "fail" and not dkim.required
    assert all_ok(checks)


# a DNS server that does not give an answer (fixtures in tests/conftest_dns.py) ------------


DNS_CHECKS = ("dkim:s1", "dkim:e1", "spf", "dmarc", "link")


def test_server_that_does_not_answer_is_unknown(world: World, silent_server: str) -> None:
    checks = by_id(world.check("good", nameserver=silent_server, timeout=0.6))
    assert {cid: checks[cid].status for cid in DNS_CHECKS} == dict.fromkeys(DNS_CHECKS, "unknown")
    assert "timeout" in checks["dkim:s1"].message
    assert "skipped: the nameserver did not answer" in checks["link"].message
    # alignment is decided from the brand file, not DNS
    assert checks["align:dkim"].status == "ok"
    assert not all_ok(list(checks.values()))
    assert all(c.expected is None for c in checks.values())


def test_servfail_is_unknown(world: World, servfail_server: str) -> None:
    checks = by_id(world.check("good", nameserver=servfail_server, timeout=2))
    assert {cid: checks[cid].status for cid in DNS_CHECKS} == dict.fromkeys(DNS_CHECKS, "unknown")
    assert "SERVFAIL" in checks["spf"].message


# output -------------------------------------------------------------------------------------


def test_render_json_and_table(world: World) -> None:
    checks = world.check("nodmarc")
    doc = json.loads(render_json(checks, "nodmarc"))
    assert doc["brand"] == "nodmarc" and doc["ok"] is False
    dmarc = next(c for c in doc["checks"] if c["id"] == "dmarc")
    assert set(dmarc) == {
        "id",
        "title",
        "status",
        "name",
        "found",
        "expected",
        "message",
        "required",
    }
    assert dmarc["status"] == "fail"
    table = render_table(checks, "nodmarc")
    assert re.search(r"^FAIL +DMARC +_dmarc\.nodmarc\.fi +no DMARC record", table, re.M)
    assert re.search(r"^ok +DKIM s1 \(rsa\) ", table, re.M)
    assert 'expected: _dmarc.nodmarc.fi. IN TXT "v=DMARC1; p=none; adkim=r; aspf=r"' in table
    assert table.rstrip().endswith("Some required checks failed.")


# the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NOTIFIER_KEY_DIR", str(world.key_dir))
    monkeypatch.setenv("NOTIFIER_BRANDS_DIR", str(world.brands_dir))
    monkeypatch.setenv("NOTIFIER_LINK_ADDRESSES", LINK_IP)
    app = typer.Typer()
    app.add_typer(dns_app, name="dns")
    return app


def test_cli_exit_codes(world: World, cli: typer.Typer, silent_server: str) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        cli, ["dns", "check", "--brand", "good", "--nameserver", world.nameserver, "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True

    bad = runner.invoke(
        cli, ["dns", "check", "--brand", "nodmarc", "--nameserver", world.nameserver]
    )
    assert bad.exit_code == EXIT_FAIL
    assert "_dmarc.nodmarc.fi" in bad.stdout

    dead = runner.invoke(
        cli, ["dns", "check", "--brand", "good", "--nameserver", silent_server, "--timeout", "0.5"]
    )
    assert dead.exit_code == EXIT_UNKNOWN
    assert "could not be made" in dead.stdout


def test_cli_errors(cli: typer.Typer) -> None:
    runner = CliRunner()
    unknown = runner.invoke(cli, ["dns", "check", "--brand", "nosuch"])
    assert unknown.exit_code == 2  # a validation error, as in every command
    assert "error: --brand: unknown brand 'nosuch'" in unknown.stderr
    badns = runner.invoke(
        cli, ["dns", "check", "--brand", "good", "--nameserver", "127.0.0.1:99999"]
    )
    assert badns.exit_code == 2  # a usage error
    assert "port out of range" in badns.stderr
