"""A DSN made by a real MTA: the worker sends through a real Postfix (own configuration
directory, loopback), which relays to an smtp-sink that rejects the recipient; Postfix
writes the bounce and delivers it to the message's VERP address on the bounce domain,
routed to ``notifier inbound`` over SMTP. The message ends ``bounced``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from notifier.outbox import Outbox, Status
from tests.conftest_smtp import SmtpSink
from tests.feedback.postfix import Postfix
from tests.feedback.support import InboundThread
from tests.test_outbox import raw_event
from tests.worker.support import BRANDS, run_worker


def test_postfix_bounce_reaches_inbound_and_bounces_the_message(
    box: Outbox, key_dir: Path, smtp_sink: Callable[..., SmtpSink]
) -> None:
    sink = smtp_sink("-f", "RCPT")  # a hard (5xx) answer to RCPT TO
    with InboundThread(box, key_dir) as inbound:
        routes = {"example.fi": sink.port}
        routes.update({b.envelope_domain: inbound.port for b in BRANDS.all()})
        with Postfix(routes) as mta:
            accepted = box.accept(raw_event(to="aino@example.fi"))  # type: ignore[attr-defined]
            stats = run_worker(box, key_dir, f"smtp://127.0.0.1:{mta.port}")
            assert stats.sent == 1  # Postfix queued it: sent, as far as we can know now
            deadline = time.monotonic() + 60
            # the DSN may arrive before the worker has recorded the 250: then it is
            # applied (pending → bounced) once the message is recorded sent
            while box.get(accepted.id).status != Status.BOUNCED and time.monotonic() < deadline:
                time.sleep(0.2)
            log = mta.log()
    reports = box.message_reports(accepted.id)
    assert reports, f"no DSN reached notifier inbound; Postfix log:\n{log}"
    [report] = reports
    assert (report.kind, report.format) == ("hard_bounce", "rfc3464")
    assert report.enhanced is not None and report.enhanced.startswith("5.")
    assert report.code is not None and 500 <= report.code < 600
    raw = box.report_raw(report.id)
    assert b"Reporting-MTA: dns; postfix.notifier.test" in raw
    assert b"Final-Recipient: rfc822; aino@example.fi" in raw
    record = box.get(accepted.id)
    assert record.status == Status.BOUNCED
    assert "status=bounced" in log  # Postfix's own account of it
