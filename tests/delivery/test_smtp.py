"""The shared SMTP engine against real servers: aiosmtpd with injected faults, smtp-sink.

Driven through :class:`RelayTransport`, the thinnest transport over the engine:
reply handling on the wire, connection faults (and when a loss is a possible
duplicate), pooling and reuse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from notifier.delivery.smtp import Timeouts
from notifier.delivery.transport import AttemptResult
from tests.conftest_smtp import SmtpSink, free_port
from tests.delivery.support import (
    SENDER,
    assert_result,
    fault,
    make_envelope,
    relay,
    send_many,
    send_one,
)
from tests.smtpd import Fault, SMTPTestServer


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def smtp_pipelining(request: pytest.FixtureRequest) -> bool:
    """Every test against ``smtp_server`` here runs twice: the server advertising
    PIPELINING (MAIL, RCPT and DATA go in one write) and not (one reply at a time)."""
    return bool(request.param)


# ----------------------------------------------------------------------------- success


def test_relay_delivers_exact_message(smtp_server: SMTPTestServer, smtp_pipelining: bool) -> None:
    envelope = make_envelope(7)
    result = send_one(smtp_server.url, envelope)
    assert_result(result, "sent", 250, "2.0.0")
    assert smtp_server.handler.pipelined == (1 if smtp_pipelining else 0)
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


# ----------------------------------------------------------------------------- pipelining


def test_pipelined_replies_are_read_in_order_across_reused_connections(
    smtp_server_factory: Callable[..., SMTPTestServer],
) -> None:
    # aiosmtpd writes each reply on its own: three replies in three segments, which
    # aiosmtplib's own reader would partly drop; a refused RCPT between successes
    # keeps the stream in step (RSET, then the next transaction on the same session)
    server = smtp_server_factory(
        Fault("RCPT", "550 5.1.1 No such user", skip=1, times=1), pipelining=True
    )
    results = send_many(server.url, [make_envelope(n) for n in range(4)])
    assert [r.outcome for r in results] == ["sent", "permanent", "sent", "sent"]
    assert_result(results[1], "permanent", 550, "5.1.1")
    assert server.sessions == 1
    assert server.handler.pipelined == 4
    assert [m.message()["Message-ID"] for m in server.messages] == [
        "<msg-0@notifier.test>",
        "<msg-2@notifier.test>",
        "<msg-3@notifier.test>",
    ]


def test_data_accepted_after_a_refused_rcpt_hangs_up_without_a_message(
    smtp_server_factory: Callable[..., SMTPTestServer],
) -> None:
    # a broken server answers 354 to the pipelined DATA although it refused the only
    # recipient: hanging up is the one safe end (a lone dot could store an empty mail)
    server = smtp_server_factory(
        Fault("RCPT", "550 5.1.1 No such user", times=1),
        Fault("DATA", "354 End data with <CR><LF>.<CR><LF>", times=1),
        pipelining=True,
    )
    first, second = send_many(server.url, [make_envelope(1), make_envelope(2)])
    assert_result(first, "permanent", 550, "5.1.1")
    assert_result(second, "sent", 250, "2.0.0")
    assert server.sessions == 2  # the first session was dropped, not reused
    assert [m.message()["Message-ID"] for m in server.messages] == ["<msg-2@notifier.test>"]


@fault("RCPT", action="hang")
def test_a_pipelined_reply_that_never_comes_times_out_at_its_own_stage(
    smtp_server: SMTPTestServer, smtp_pipelining: bool
) -> None:
    result = send_one(smtp_server.url, timeouts=Timeouts(connect=2, command=0.3, data=5))
    assert_result(result, "transient", possible_duplicate=False)
    assert "rcpt: timed out" in result.text
    assert smtp_server.messages == []


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
