"""Direct delivery against a loopback dnsmasq: MX order, fall-through, DNS failures, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from notifier.delivery.direct import DirectTransport
from notifier.delivery.transport import AttemptResult, Envelope
from tests.conftest_smtp import TLSFiles, free_port
from tests.delivery.support import FAST, assert_result, fault, make_envelope
from tests.smtpd import SMTPTestServer

# ----------------------------------------------------------------------------- direct (MX)


def direct_send(
    nameserver: str, port: int, envelopes: list[Envelope], **kwargs: Any
) -> list[AttemptResult]:
    async def go() -> list[AttemptResult]:
        kwargs.setdefault("timeouts", FAST)
        kwargs.setdefault("dns_lifetime", 2.0)
        transport = DirectTransport(
            nameserver=nameserver, port=port, helo="client.notifier.test", **kwargs
        )
        try:
            return [await transport.send(e) for e in envelopes]
        finally:
            await transport.close()

    return asyncio.run(go())


def test_mx_hosts_in_preference_order(dnsmasq: Callable[..., str]) -> None:
    ns = dnsmasq(
        "--mx-host=pref.test,mx-c.pref.test,30",
        "--mx-host=pref.test,mx-a.pref.test,10",
        "--mx-host=pref.test,mx-b.pref.test,20",
    )

    async def go() -> list[str]:
        transport = DirectTransport(nameserver=ns)
        try:
            return await transport.mx_hosts("pref.test")
        finally:
            await transport.close()

    assert asyncio.run(go()) == ["mx-a.pref.test", "mx-b.pref.test", "mx-c.pref.test"]


def test_direct_delivers_to_the_preferred_mx(
    dnsmasq: Callable[..., str], smtp_server: SMTPTestServer
) -> None:
    ns = dnsmasq(
        "--mx-host=example.test,backup.example.test,20",
        "--mx-host=example.test,primary.example.test,10",
        "--host-record=backup.example.test,127.0.0.1",
        "--host-record=primary.example.test,127.0.0.1",
    )
    [result] = direct_send(ns, smtp_server.port, [make_envelope()])
    assert_result(result, "sent", 250, "2.0.0")
    assert result.host == f"primary.example.test[127.0.0.1]:{smtp_server.port}"
    assert len(smtp_server.messages) == 1


def test_dead_first_mx_falls_through_to_the_next(
    dnsmasq: Callable[..., str], smtp_server: SMTPTestServer
) -> None:
    ns = dnsmasq(
        "--mx-host=example.test,dead.example.test,10",
        "--mx-host=example.test,alive.example.test,20",
        "--host-record=dead.example.test,127.0.0.2",  # nothing listens on 127.0.0.2
        "--host-record=alive.example.test,127.0.0.1",
    )
    [result] = direct_send(ns, smtp_server.port, [make_envelope()])
    assert_result(result, "sent", 250, "2.0.0")
    assert result.host is not None and result.host.startswith("alive.example.test[")
    assert len(smtp_server.messages) == 1


@fault("CONNECT", "421 4.3.2 Too busy", times=1)
def test_mx_answering_421_at_greeting_falls_through(
    dnsmasq: Callable[..., str], smtp_server: SMTPTestServer
) -> None:
    ns = dnsmasq(
        "--mx-host=example.test,busy.example.test,10",
        "--mx-host=example.test,other.example.test,20",
        "--host-record=busy.example.test,127.0.0.1",
        "--host-record=other.example.test,127.0.0.1",
    )
    [result] = direct_send(ns, smtp_server.port, [make_envelope()])
    assert_result(result, "sent", 250, "2.0.0")
    assert result.host is not None and result.host.startswith("other.example.test[")


def test_no_mx_falls_back_to_the_address_record(
    dnsmasq: Callable[..., str], smtp_server: SMTPTestServer
) -> None:
    ns = dnsmasq("--host-record=nomx.test,127.0.0.1")
    [result] = direct_send(ns, smtp_server.port, [make_envelope(rcpt="bob@nomx.test")])
    assert_result(result, "sent", 250, "2.0.0")
    assert result.host == f"nomx.test[127.0.0.1]:{smtp_server.port}"


def test_nxdomain_is_permanent(dnsmasq: Callable[..., str], smtp_server: SMTPTestServer) -> None:
    ns = dnsmasq("--host-record=other.test,127.0.0.1")
    [result] = direct_send(ns, smtp_server.port, [make_envelope(rcpt="bob@missing.test")])
    assert_result(result, "permanent", None, "5.4.4")
    assert smtp_server.sessions == 0


def test_null_mx_is_permanent(dnsmasq: Callable[..., str], smtp_server: SMTPTestServer) -> None:
    ns = dnsmasq("--mx-host=nullmx.test,.,0")
    [result] = direct_send(ns, smtp_server.port, [make_envelope(rcpt="bob@nullmx.test")])
    assert_result(result, "permanent", 556, "5.1.10")
    assert smtp_server.sessions == 0


def test_servfail_is_transient(dnsmasq: Callable[..., str], smtp_server: SMTPTestServer) -> None:
    ns = dnsmasq()  # no upstream: names outside .test are refused, like SERVFAIL
    [result] = direct_send(ns, smtp_server.port, [make_envelope(rcpt="bob@example.org")])
    assert_result(result, "transient", None, "4.4.3")


def test_dns_timeout_is_transient(smtp_server: SMTPTestServer) -> None:
    silent = f"127.0.0.1:{free_port()}"  # no DNS server there
    [result] = direct_send(silent, smtp_server.port, [make_envelope()], dns_lifetime=0.5)
    assert_result(result, "transient", None, "4.4.3")


def test_direct_uses_opportunistic_unverified_starttls(
    dnsmasq: Callable[..., str],
    smtp_server_factory: Callable[..., SMTPTestServer],
    tls_files: TLSFiles,
) -> None:
    server = smtp_server_factory(tls_context=tls_files.server_context())
    ns = dnsmasq(
        "--mx-host=example.test,mx.example.test,10", "--host-record=mx.example.test,127.0.0.1"
    )
    [result] = direct_send(ns, server.port, [make_envelope()])
    assert_result(result, "sent", 250, "2.0.0")
    assert server.messages[0].tls
    assert server.sessions == 1


def test_direct_falls_back_to_plaintext_when_starttls_fails(
    dnsmasq: Callable[..., str],
    smtp_server_factory: Callable[..., SMTPTestServer],
    tls_files: TLSFiles,
) -> None:
    context = tls_files.server_context()
    context.verify_mode = ssl.CERT_REQUIRED  # demands a client certificate we do not have
    context.load_verify_locations(cafile=str(tls_files.cert))
    server = smtp_server_factory(tls_context=context)
    ns = dnsmasq(
        "--mx-host=example.test,mx.example.test,10", "--host-record=mx.example.test,127.0.0.1"
    )
    [result] = direct_send(ns, server.port, [make_envelope()])
    assert_result(result, "sent", 250, "2.0.0")
    assert not server.messages[0].tls
    assert server.sessions == 2  # the failed TLS session, then the plaintext one


def test_direct_pools_per_destination_host(
    dnsmasq: Callable[..., str], smtp_server: SMTPTestServer
) -> None:
    ns = dnsmasq(
        "--mx-host=one.test,mx.shared.test,10",
        "--mx-host=two.test,mx.shared.test,10",
        "--host-record=mx.shared.test,127.0.0.1",
    )
    envelopes = [make_envelope(n, rcpt=f"u{n}@{'one' if n % 2 else 'two'}.test") for n in range(6)]
    results = direct_send(ns, smtp_server.port, envelopes)
    assert [r.outcome for r in results] == ["sent"] * 6
    assert smtp_server.sessions == 1
