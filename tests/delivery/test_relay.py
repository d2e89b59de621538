"""The relay transport's sessions: implicit TLS, STARTTLS modes and AUTH from the URL."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from notifier.delivery import smtp
from tests.conftest_smtp import TLSFiles
from tests.delivery.support import assert_result, make_envelope, relay, send_many, send_one
from tests.smtpd import SMTPTestServer

# ----------------------------------------------------------------------------- TLS and AUTH


def test_smtps_implicit_tls(
    smtp_server_factory: Callable[..., SMTPTestServer], tls_files: TLSFiles
) -> None:
    server = smtp_server_factory(ssl_context=tls_files.server_context())
    url = f"smtps://localhost:{server.port}?cafile={tls_files.cert}"
    result = send_one(url)
    assert_result(result, "sent", 250, "2.0.0")
    [got] = server.messages
    assert got.tls


def test_starttls_required_upgrades(
    smtp_server_factory: Callable[..., SMTPTestServer], tls_files: TLSFiles
) -> None:
    server = smtp_server_factory(tls_context=tls_files.server_context(), require_starttls=True)
    url = f"smtp://localhost:{server.port}?starttls=required"
    result = send_one(url, tls_context=tls_files.client_context())
    assert_result(result, "sent", 250, "2.0.0")
    assert server.messages[0].tls


@pytest.mark.parametrize("tls", ["smtps", "starttls"])
def test_pipelined_transactions_over_tls(
    smtp_server_factory: Callable[..., SMTPTestServer], tls_files: TLSFiles, tls: str
) -> None:
    # the replies arrive through the TLS layer, which hands them to the stand-in reader
    if tls == "smtps":
        server = smtp_server_factory(ssl_context=tls_files.server_context(), pipelining=True)
        url = f"smtps://localhost:{server.port}?cafile={tls_files.cert}"
    else:
        server = smtp_server_factory(
            tls_context=tls_files.server_context(), require_starttls=True, pipelining=True
        )
        url = f"smtp://localhost:{server.port}?starttls=required&cafile={tls_files.cert}"
    results = send_many(url, [make_envelope(n) for n in range(3)])
    assert [r.outcome for r in results] == ["sent"] * 3
    assert server.sessions == 1
    assert server.handler.pipelined == 3
    assert all(m.tls for m in server.messages)


def test_starttls_required_but_not_offered_never_sends_in_clear(
    smtp_server: SMTPTestServer,
) -> None:
    result = send_one(f"{smtp_server.url}?starttls=required")
    assert_result(result, "transient")
    assert "STARTTLS required" in result.text
    assert smtp_server.messages == []


def test_starttls_required_with_failing_handshake_is_transient(
    smtp_server_factory: Callable[..., SMTPTestServer], tls_files: TLSFiles
) -> None:
    # the default context does not trust the self-signed certificate
    server = smtp_server_factory(tls_context=tls_files.server_context())
    result = send_one(f"smtp://localhost:{server.port}?starttls=required")
    assert_result(result, "transient")
    assert "starttls" in result.text
    assert server.messages == []
    assert server.sessions == 1  # no second, plaintext session


def test_auth_from_url(smtp_server_factory: Callable[..., SMTPTestServer]) -> None:
    server = smtp_server_factory(users={"mailer": "p@ss w0rd"})
    url = f"smtp://mailer:p%40ss%20w0rd@127.0.0.1:{server.port}"
    transport = relay(url)
    assert "p@ss" not in repr(transport) and "p%40ss" not in repr(transport)
    assert "mailer:***@" in repr(transport)
    result = send_one(url)
    assert_result(result, "sent", 250, "2.0.0")
    assert server.messages[0].user == "mailer"


def test_auth_failure_is_transient_and_hides_the_password(
    smtp_server_factory: Callable[..., SMTPTestServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server_factory(users={"mailer": "right"})
    with caplog.at_level(logging.DEBUG):
        result = send_one(f"smtp://mailer:wrong-secret@127.0.0.1:{server.port}")
    assert_result(result, "transient", 535, "5.7.8")
    assert "wrong-secret" not in repr(result) and "wrong-secret" not in caplog.text
    assert server.messages == []


def test_credentials_never_go_over_plaintext_to_a_remote_host(
    smtp_server_factory: Callable[..., SMTPTestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server_factory(users={"mailer": "secret"})
    monkeypatch.setattr(smtp, "_is_loopback", lambda host: False)  # pretend it is remote
    result = send_one(f"smtp://mailer:secret@127.0.0.1:{server.port}")
    assert_result(result, "transient")
    assert "unencrypted" in result.text
    assert server.messages == []
