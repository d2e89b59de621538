"""Envelopes made safe for the wire: injected addresses, smuggled end-of-data, IDNA."""

from __future__ import annotations

from tests.delivery.support import assert_result, make_envelope, send_many, send_one
from tests.smtpd import SMTPTestServer

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
