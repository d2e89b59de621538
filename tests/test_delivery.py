"""Delivery transports against real servers: aiosmtpd with injected faults, dnsmasq, smtp-sink.

Every test runs its client in ``asyncio.run`` and closes its transport; timeouts are
short (``FAST``) so the fault tests are quick, but nothing asserts on wall time.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from notifier.delivery import smtp as delivery
from notifier.delivery.smtp import (
    CaptureTransport,
    DirectTransport,
    RelayTransport,
    Timeouts,
    classify_reply,
    parse_enhanced,
    parse_retry_after,
    transport_from_url,
)
from notifier.delivery.transport import AttemptResult, Envelope
from notifier.errors import ConfigError
from tests.conftest_smtp import SmtpSink, TLSFiles, free_port
from tests.smtpd import Fault, SMTPTestServer

fault = pytest.mark.smtp_fault
FAST = Timeouts(connect=2.0, command=1.0, data=1.0, data_block=2.0, final=2.0, quit=1.0)
SENDER = "bounce+123@bounces.brand.test"


def make_envelope(
    n: int = 0,
    *,
    rcpt: str = "alice@example.test",
    body: str | None = None,
    raw_body: bytes | None = None,
) -> Envelope:
    msg = EmailMessage()
    msg["From"] = "Brand <no-reply@brand.test>"
    msg["To"] = rcpt if rcpt.isascii() and rcpt.isprintable() else "recipient@example.test"
    msg["Subject"] = f"Renewal reminder {n}"
    msg["Message-ID"] = f"<msg-{n}@notifier.test>"
    msg.set_content(body or f"Hello {n}\nYour domain expires soon.\n")
    data = msg.as_bytes(policy=email.policy.SMTP)
    if raw_body is not None:
        head = data.split(b"\r\n\r\n", 1)[0]
        data = head + b"\r\n\r\n" + raw_body
    return Envelope(
        message_id=f"<msg-{n}@notifier.test>", mail_from=SENDER, rcpt_to=rcpt, data=data
    )


def relay(url: str, **kwargs: Any) -> RelayTransport:
    kwargs.setdefault("timeouts", FAST)
    kwargs.setdefault("helo", "client.notifier.test")
    return RelayTransport(url, **kwargs)


def send_one(url: str, envelope: Envelope | None = None, **kwargs: Any) -> AttemptResult:
    async def go() -> AttemptResult:
        transport = relay(url, **kwargs)
        try:
            return await transport.send(envelope or make_envelope())
        finally:
            await transport.close()

    return asyncio.run(go())


def send_many(url: str, envelopes: list[Envelope], **kwargs: Any) -> list[AttemptResult]:
    """Send one after the other on one transport (so connections are reused)."""

    async def go() -> list[AttemptResult]:
        transport = relay(url, **kwargs)
        try:
            return [await transport.send(e) for e in envelopes]
        finally:
            await transport.close()

    return asyncio.run(go())


def assert_result(
    result: AttemptResult,
    outcome: str,
    code: int | None = None,
    enhanced: str | None = None,
    *,
    possible_duplicate: bool = False,
) -> None:
    assert (result.outcome, result.code, result.enhanced, result.possible_duplicate) == (
        outcome,
        code,
        enhanced,
        possible_duplicate,
    ), result


# ----------------------------------------------------------------------------- success


def test_relay_delivers_exact_message(smtp_server: SMTPTestServer) -> None:
    envelope = make_envelope(7)
    result = send_one(smtp_server.url, envelope)
    assert_result(result, "sent", 250, "2.0.0")
    assert result.host == f"127.0.0.1:{smtp_server.port}"
    [got] = smtp_server.messages
    assert (got.mail_from, got.rcpt_tos) == (SENDER, ["alice@example.test"])
    assert got.data == envelope.data
    assert got.message()["Message-ID"] == "<msg-7@notifier.test>"


# ----------------------------------------------------------------------------- replies


@fault("CONNECT", "421 4.3.2 Service shutting down, closing channel")
def test_421_on_connect_is_transient(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient", 421, "4.3.2")
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [
        pytest.param(451, "4.3.0", marks=fault("RCPT", "451 4.3.0 Temporary lookup failure")),
        pytest.param(452, "4.5.3", marks=fault("RCPT", "452 4.5.3 Too many recipients")),
        pytest.param(451, "4.3.0", marks=fault("DATA", "451 4.3.0 Queue file write error")),
        pytest.param(452, "4.3.1", marks=fault("DATA", "452 4.3.1 Insufficient system storage")),
        pytest.param(451, "4.7.1", marks=fault("MAIL", "451 4.7.1 Sender rate limited")),
    ],
)
def test_4xx_on_rcpt_data_mail_is_transient(
    smtp_server: SMTPTestServer, code: int, enhanced: str
) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient", code, enhanced)
    assert smtp_server.messages == []


@fault("RCPT", "550 5.1.1 <alice@example.test>: Recipient address rejected: User unknown")
def test_550_5_1_1_is_permanent_no_such_user(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "permanent", 550, "5.1.1")
    assert result.no_such_user
    assert "User unknown" in result.text


@pytest.mark.parametrize(
    ("outcome", "code", "enhanced"),
    [
        pytest.param(
            "permanent", 554, "5.7.1", marks=fault("DOT", "554 5.7.1 Message rejected as spam")
        ),
        pytest.param(
            "permanent", 552, "5.3.4", marks=fault("DOT", "552 5.3.4 Message size exceeds limit")
        ),
        pytest.param(
            "transient", 552, "5.5.3", marks=fault("RCPT", "552 5.5.3 Too many recipients")
        ),
        pytest.param("transient", 552, None, marks=fault("RCPT", "552 Requested action aborted")),
        pytest.param(
            "transient", 452, "4.5.3", marks=fault("DOT", "452 4.5.3 Too many recipients")
        ),
    ],
)
def test_5xx_and_too_many_recipients(
    smtp_server: SMTPTestServer, outcome: str, code: int, enhanced: str | None
) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, outcome, code, enhanced)
    assert smtp_server.messages == []


@fault("RCPT", "450 4.2.0 Greylisted, please try again in 5 minutes")
def test_try_again_in_n_minutes_sets_retry_after(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient", 450, "4.2.0")
    assert result.retry_after == 300


@fault("DOT", "421 4.3.0 Shutting down", times=1)
def test_421_after_dot_is_transient_and_drops_the_connection(
    smtp_server: SMTPTestServer,
) -> None:
    first, second = send_many(smtp_server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "transient", 421, "4.3.0")  # an answer: no duplicate risk
    assert_result(second, "sent", 250, "2.0.0")
    assert smtp_server.sessions == 2
    assert [m.message()["Subject"] for m in smtp_server.messages] == ["Renewal reminder 2"]


# ----------------------------------------------------------------------------- connection faults


def test_connection_refused_is_transient() -> None:
    port = free_port()  # nothing listens there
    result = send_one(f"smtp://127.0.0.1:{port}")
    assert_result(result, "transient")
    assert "cannot connect" in result.text


@fault("BODY", action="disconnect")
def test_disconnect_in_the_middle_of_data_is_not_a_duplicate(
    smtp_server: SMTPTestServer,
) -> None:
    # 16 MB: more than the kernel buffers take, so the hang-up comes while the body is
    # still being written and the final dot provably never left
    big = (b"x" * 78 + b"\r\n") * 200_000
    result = send_one(smtp_server.url, make_envelope(raw_body=big))
    assert_result(result, "transient", possible_duplicate=False)
    assert "body" in result.text
    assert smtp_server.messages == []


@fault("DOT", action="disconnect")
def test_disconnect_after_the_dot_is_a_possible_duplicate(
    smtp_server: SMTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="notifier.delivery"):
        result = send_one(smtp_server.url)
    assert_result(result, "transient", possible_duplicate=True)
    assert len(smtp_server.messages) == 1  # the server did store it
    assert "possible duplicate" in caplog.text
    assert "<msg-0@notifier.test>" in caplog.text


@fault("RCPT", action="hang")
def test_server_that_stops_answering_times_out(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url, timeouts=Timeouts(connect=2, command=0.5, final=5))
    assert_result(result, "transient", possible_duplicate=False)
    assert "rcpt: timed out" in result.text


@fault("DOT", action="hang")
def test_no_reply_after_the_dot_is_a_possible_duplicate(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url, timeouts=Timeouts(connect=2, command=1, final=0.5))
    assert_result(result, "transient", possible_duplicate=True)
    assert "dot: timed out" in result.text


@fault("DOT", action="delay", delay=1.5)
def test_late_250_within_the_final_dot_timeout_is_success(smtp_server: SMTPTestServer) -> None:
    # the command timeout is far shorter than the delay: only the separate final-dot
    # timeout makes this a success rather than a retry (and a duplicate)
    result = send_one(smtp_server.url, timeouts=Timeouts(connect=2, command=0.5, final=10))
    assert_result(result, "sent", 250, "2.0.0")
    assert len(smtp_server.messages) == 1


@fault("RCPT", action="delay", delay=0.2)
@fault("MAIL", action="delay", delay=0.2)
def test_slow_server_within_timeouts_is_success(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url, timeouts=Timeouts(connect=2, command=2, final=2))
    assert_result(result, "sent", 250, "2.0.0")


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            b"\x00\xff\xfe garbage\r\n",
            marks=fault("MAIL", b"\x00\xff\xfe garbage\r\n", action="raw"),
        ),
        pytest.param(
            b"250 " + b"x" * 10_000,
            marks=fault("RCPT", b"250-" + b"x" * 10_000 + b"\r\n", action="raw"),
        ),
        pytest.param(b"99 short", marks=fault("DATA", b"99\r\n", action="raw")),
    ],
)
def test_garbage_or_over_long_reply_is_transient(smtp_server: SMTPTestServer, reply: bytes) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient", possible_duplicate=False)
    assert "malformed" in result.text
    assert len(result.text) <= 1000
    assert smtp_server.messages == []


@fault("DOT", b"\x07\x08 what?\r\n", action="raw")
def test_garbage_after_the_dot_is_a_possible_duplicate(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient", possible_duplicate=True)


@fault("MAIL", action="disconnect")
def test_disconnect_on_a_fresh_connection_is_not_retried(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url)
    assert_result(result, "transient")
    assert smtp_server.sessions == 1


# ----------------------------------------------------------------------------- pooling


def test_pool_of_two_carries_fifty_messages_on_two_connections(
    smtp_server: SMTPTestServer,
) -> None:
    async def go() -> list[AttemptResult]:
        transport = relay(smtp_server.url, pool_size=2)
        try:
            return await asyncio.gather(
                *(transport.send(make_envelope(n, rcpt=f"user{n}@example.test")) for n in range(50))
            )
        finally:
            await transport.close()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["sent"] * 50
    assert smtp_server.sessions <= 2
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        f"user{n}@example.test" for n in range(50)
    )


def test_connection_is_replaced_after_max_per_connection(smtp_server: SMTPTestServer) -> None:
    results = send_many(
        smtp_server.url, [make_envelope(n) for n in range(10)], pool_size=1, max_per_connection=3
    )
    assert [r.outcome for r in results] == ["sent"] * 10
    assert smtp_server.sessions == 4  # 3 + 3 + 3 + 1
    assert [m.session for m in smtp_server.messages] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_connection_is_replaced_after_max_age(smtp_server: SMTPTestServer) -> None:
    results = send_many(smtp_server.url, [make_envelope(n) for n in range(3)], max_age=1e-6)
    assert [r.outcome for r in results] == ["sent"] * 3
    assert smtp_server.sessions == 3


@fault("RCPT", "451 4.3.0 Try later", times=1)
def test_connection_is_reused_after_a_transient_reply(smtp_server: SMTPTestServer) -> None:
    first, second = send_many(smtp_server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "transient", 451, "4.3.0")
    assert_result(second, "sent", 250, "2.0.0")
    assert smtp_server.sessions == 1  # RSET, not reconnect


@fault("MAIL", "421 4.7.0 Too many errors", times=1)
def test_421_discards_the_connection(smtp_server: SMTPTestServer) -> None:
    first, second = send_many(smtp_server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "transient", 421, "4.7.0")
    assert_result(second, "sent", 250, "2.0.0")
    assert smtp_server.sessions == 2


@pytest.mark.parametrize("client_noticed", [False, True])
def test_reconnect_after_the_server_drops_an_idle_connection(
    smtp_server: SMTPTestServer, client_noticed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> tuple[AttemptResult, AttemptResult, int]:
        transport = relay(smtp_server.url, pool_size=1)
        try:
            first = await transport.send(make_envelope(1))
            # blocks this loop: unless it sleeps, the client cannot see the hang-up
            # before it sends MAIL on the pooled connection
            smtp_server.drop_connections()
            if client_noticed:
                await asyncio.sleep(0.2)
            second = await transport.send(make_envelope(2))
            return first, second, transport.connections_opened
        finally:
            await transport.close()

    with caplog.at_level(logging.INFO, logger="notifier.delivery"):
        first, second, opened = asyncio.run(go())
    assert_result(first, "sent", 250, "2.0.0")
    assert_result(second, "sent", 250, "2.0.0")
    # unnoticed: MAIL fails on the dead connection and the send reopens once;
    # noticed: the pool drops the dead connection before using it
    assert ("reopening once" in caplog.text) is not client_noticed
    assert opened == 2
    assert smtp_server.sessions == 2
    assert [m.message()["Subject"] for m in smtp_server.messages] == [
        "Renewal reminder 1",
        "Renewal reminder 2",
    ]


@fault("MAIL", "421 4.4.2 Idle timeout exceeded", skip=1, times=1)
def test_421_on_a_reused_connection_is_reopened_once(smtp_server: SMTPTestServer) -> None:
    first, second = send_many(smtp_server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "sent", 250, "2.0.0")
    assert_result(second, "sent", 250, "2.0.0")
    assert smtp_server.sessions == 2
    assert len(smtp_server.messages) == 2


@fault("DATA", action="disconnect", skip=1)
def test_no_resend_once_the_transaction_was_acknowledged(smtp_server: SMTPTestServer) -> None:
    # MAIL and RCPT were accepted on the reused connection: the loss is reported, not
    # papered over by a silent second transaction
    first, second = send_many(smtp_server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "sent", 250, "2.0.0")
    assert_result(second, "transient", possible_duplicate=False)
    assert "data" in second.text
    assert smtp_server.sessions == 1
    assert len(smtp_server.messages) == 1


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
    monkeypatch.setattr(delivery, "_is_loopback", lambda host: False)  # pretend it is remote
    result = send_one(f"smtp://mailer:secret@127.0.0.1:{server.port}")
    assert_result(result, "transient")
    assert "unencrypted" in result.text
    assert server.messages == []


# ----------------------------------------------------------------------------- envelopes


def test_header_injection_in_envelope_address_is_refused(smtp_server: SMTPTestServer) -> None:
    result = send_one(smtp_server.url, make_envelope(rcpt="bob@example.test\nX"))
    assert_result(result, "permanent", None, "5.1.3")
    assert smtp_server.sessions == 0


def test_smuggled_end_of_data_stays_inside_one_message(smtp_server: SMTPTestServer) -> None:
    raw = b"line one\n.\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<x@example.test>\r\n.\r\n"
    result = send_one(smtp_server.url, make_envelope(raw_body=raw))
    assert_result(result, "sent", 250, "2.0.0")
    [got] = smtp_server.messages
    assert got.rcpt_tos == ["alice@example.test"]
    assert b"MAIL FROM:<evil@attacker.test>" in got.data


def test_internationalised_addresses(smtp_server: SMTPTestServer) -> None:
    results = send_many(
        smtp_server.url,
        [make_envelope(1, rcpt="åse@example.test"), make_envelope(2, rcpt="bob@blåbær.test")],
    )
    assert [r.outcome for r in results] == ["sent", "sent"]
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ["åse@example.test"],
        ["bob@" + "blåbær.test".encode("idna").decode()],
    ]


# ----------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("code", "text", "stage", "outcome", "enhanced"),
    [
        (250, "2.0.0 Ok: queued as ABC", "dot", "sent", "2.0.0"),
        (451, "4.3.0 Try again", "rcpt", "transient", "4.3.0"),
        (550, "5.1.1 User unknown", "rcpt", "permanent", "5.1.1"),
        (550, "4.1.1 mismatched class", "rcpt", "permanent", None),
        (552, "5.3.4 Message too big", "dot", "permanent", "5.3.4"),
        (552, "5.3.4 Message too big", "rcpt", "permanent", "5.3.4"),
        (552, "Too many recipients", "dot", "transient", None),
        (999, "weird", "dot", "transient", None),  # code dropped: not SMTP
        (554, "no enhanced code here 5.7.1", "dot", "permanent", None),
    ],
)
def test_classify_reply(
    code: int, text: str, stage: str, outcome: str, enhanced: str | None
) -> None:
    result = classify_reply(code, text, stage=stage)
    expected_code = code if 200 <= code <= 599 else None
    assert (result.outcome, result.code, result.enhanced) == (outcome, expected_code, enhanced)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4.7.1 Greylisted, try again in 5 minutes", 300),
        ("Please retry in 30 seconds", 30),
        ("try again after 2 hours", 7200),
        ("Try again in 90s", 90),
        ("come back in 10 min", 600),
        ("try again in 99999 hours", 86400),
        ("try again later", None),
        ("Mailbox busy", None),
    ],
)
def test_parse_retry_after(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text) == seconds


def test_parse_enhanced() -> None:
    assert parse_enhanced(550, "5.1.1 <a@b>: unknown") == "5.1.1"
    assert parse_enhanced(421, "4.4.2 idle") == "4.4.2"
    assert parse_enhanced(550, "Requested action not taken") is None
    assert parse_enhanced(250, "2.0.0.1 not a code") is None


# ----------------------------------------------------------------------------- capture


def test_capture_writes_parseable_eml_atomically(tmp_path: Path) -> None:
    mail_dir = tmp_path / "var" / "mail"

    async def go() -> list[AttemptResult]:
        transport = transport_from_url(None, mail_dir)
        assert isinstance(transport, CaptureTransport)
        try:
            return [await transport.send(make_envelope(3)), await transport.send(make_envelope(3))]
        finally:
            await transport.close()

    results = asyncio.run(go())
    assert [(r.outcome, r.host) for r in results] == [("sent", "capture")] * 2
    files = sorted(mail_dir.iterdir())
    assert len(files) == 2  # a retry is a second file, never an overwrite
    assert all(f.name.endswith("-msg-3@notifier.test.eml") for f in files)
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Renewal reminder 3"
    assert msg["Message-ID"] == "<msg-3@notifier.test>"
    assert msg["Return-Path"] == f"<{SENDER}>"
    assert msg["Delivered-To"] == "alice@example.test"
    assert "Your domain expires soon." in msg.get_content()
    assert str(files[0]) in results[0].text or files[0].name in " ".join(r.text for r in results)


def test_capture_refuses_a_bad_envelope(tmp_path: Path) -> None:
    async def go() -> AttemptResult:
        return await CaptureTransport(tmp_path).send(make_envelope(rcpt="a@b.test\r\nBcc: x@y"))

    assert asyncio.run(go()).outcome == "permanent"
    assert list(tmp_path.iterdir()) == []


def test_capture_disk_error_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    async def go() -> AttemptResult:
        return await CaptureTransport(blocker / "mail").send(make_envelope())

    result = asyncio.run(go())
    assert result.outcome == "transient"
    assert "capture" in result.text


# ----------------------------------------------------------------------------- configuration


def test_transport_from_url_picks_the_transport(tmp_path: Path) -> None:
    assert isinstance(transport_from_url(None, tmp_path), CaptureTransport)
    assert isinstance(transport_from_url("  ", tmp_path), CaptureTransport)
    plain = transport_from_url("smtp://relay.example:2525?pool_size=8", tmp_path)
    assert isinstance(plain, RelayTransport)
    assert (plain.endpoint.port, plain.endpoint.implicit_tls, plain.limits.size) == (2525, False, 8)
    tls = transport_from_url("smtps://relay.example", tmp_path)
    assert isinstance(tls, RelayTransport)
    assert (tls.endpoint.port, tls.endpoint.implicit_tls) == (465, True)
    direct = transport_from_url("direct://?port=2525&nameserver=127.0.0.1:5353", tmp_path)
    assert isinstance(direct, DirectTransport)
    assert direct.port == 2525
    assert (direct.resolver.nameservers, direct.resolver.port) == (["127.0.0.1"], 5353)


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example",
        "relay.example:25",
        "smtp://",
        "smtp://user:hunter2@relay.example:99999",
        "smtp://user:hunter2@relay.example?starttls=maybe",
        "smtp://user:hunter2@relay.example?colour=blue",
        "smtp://user:hunter2@relay.example?pool_size=0",
        "smtps://user:hunter2@relay.example?starttls=required",
        "direct://mx.example",
        "direct://?nameserver=dns.example",
    ],
)
def test_bad_url_is_a_config_error_naming_the_setting(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        transport_from_url(url, tmp_path)
    assert "NOTIFIER_SMTP_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_repr_hides_the_password() -> None:
    transport = RelayTransport("smtp://user:hunter2@relay.example:587?starttls=required")
    assert "hunter2" not in repr(transport)
    assert "hunter2" not in repr(transport.endpoint)
    assert "user:***@relay.example:587" in repr(transport)


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


# ----------------------------------------------------------------------------- Postfix smtp-sink


def test_smtp_sink_accepts_a_pooled_batch(smtp_sink: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink()

    async def go() -> list[AttemptResult]:
        transport = relay(sink.url, pool_size=2)
        try:
            return await asyncio.gather(*(transport.send(make_envelope(n)) for n in range(20)))
        finally:
            await transport.close()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["sent"] * 20
    assert len(sink.dumped()) == 20


@pytest.mark.parametrize(
    ("flags", "outcome", "code", "enhanced", "duplicate"),
    [
        (("-r", "RCPT"), "transient", 450, "4.3.0", False),
        (("-f", "RCPT"), "permanent", 500, "5.3.0", False),
        (("-Q", "."), "transient", 421, "4.0.0", False),
        (("-q", "."), "transient", None, None, True),
        (("-Q", "MAIL"), "transient", 421, "4.0.0", False),
    ],
)
def test_smtp_sink_faults(
    smtp_sink: Callable[..., SmtpSink],
    flags: tuple[str, ...],
    outcome: str,
    code: int | None,
    enhanced: str | None,
    duplicate: bool,
) -> None:
    sink = smtp_sink(*flags)
    result = send_one(sink.url)
    assert_result(result, outcome, code, enhanced, possible_duplicate=duplicate)


def test_smtp_sink_late_reply_after_the_dot(smtp_sink: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink("-W", ".:2")
    result = send_one(sink.url, timeouts=Timeouts(connect=2, command=0.5, final=10))
    assert_result(result, "sent", 250, "2.0.0")


def test_fault_marker_parsing() -> None:
    assert Fault("rcpt", "451 x").action == "reply"
    with pytest.raises(ValueError):
        Fault("NOWHERE", "451 x")
    with pytest.raises(ValueError):
        Fault("MAIL")
