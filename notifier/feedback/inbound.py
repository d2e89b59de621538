"""``notifier inbound``: the MX of the bounce domains, and the pipe for an existing MTA.

The SMTP server (aiosmtpd) accepts recipients only on the bounce domains the brands
declare; a VERP address whose MAC does not verify is refused and counted as forged,
never stored (its content is not logged either). A message over the size limit gets
552 before anything is stored. ``250`` is answered only after the report is committed
(a connection dropped before the final dot stores nothing, and a commit that fails
answers 451 so the sender retries): the reporting MTA keeps it until then, so nothing
accepted is lost. Reports arriving together share one durable commit (group commit),
which is what lets one process take thousands of DSNs a second on SQLite's fsync.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..errors import StorageError
from ..outbox import Outbox
from ..outbox.feedback import InboundReport, ReportRecord
from .reports import Report, parse, parse_fast
from .smtpd import BlockDataSMTP
from .verp import Verp

__all__ = ["InboundServer", "Receiver", "Verdict"]

log = logging.getLogger("notifier.inbound")

Verdict = Literal["ok", "unknown_domain", "forged", "bad_address"]
#: most reports stored in one transaction
MAX_GROUP = 256
#: seconds between applying bounces that arrived before their message was recorded sent
PENDING_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Incoming:
    raw: bytes
    mail_from: str | None
    rcpts: tuple[str, ...]


class Receiver:
    """Checks recipients and turns received bytes into stored reports."""

    def __init__(self, outbox: Outbox, verp: Verp, domains: Iterable[str]) -> None:
        self.outbox = outbox
        self.verp = verp
        self.domains = frozenset(d.lower().rstrip(".") for d in domains)

    def verdict(self, address: str) -> Verdict:
        local, at, domain = address.rpartition("@")
        if not at or not local:
            return "bad_address"
        if domain.lower().rstrip(".") not in self.domains:
            return "unknown_domain"
        return "forged" if self.verp.check(address).forged else "ok"

    def reports(self, item: Incoming, parsed: Report | None = None) -> list[InboundReport]:
        """One report per VERP-matched recipient (normally exactly one), else one
        unmatched; an empty list when every VERP recipient was forged. ``parsed``:
        ``item`` already read (see :func:`parse_fast`)."""
        parsed = parsed or parse(item.raw)
        base = InboundReport(
            raw=item.raw,
            sha256=hashlib.sha256(item.raw).hexdigest(),
            kind=parsed.kind,
            format=parsed.format,
            mail_from=_clean(item.mail_from),
            recipient=_clean(parsed.recipient),
            action=_clean(parsed.action),
            enhanced=_clean(parsed.status),
            code=parsed.code,
            diagnostic=_clean(parsed.diagnostic),
            original_message_id=_clean(parsed.original_message_id),
            feedback_type=_clean(parsed.feedback_type),
            suppresses=parsed.suppresses,
        )
        out: list[InboundReport] = []
        forged = 0
        for rcpt in item.rcpts:
            match = self.verp.check(rcpt)
            if match.forged:
                forged += 1
            elif match.message is not None:
                out.append(replace(base, rcpt=_clean(rcpt), message=match.message))
        if forged and not out:
            log.warning("dropped a report to %d forged VERP address(es)", forged)
            self.outbox.count_forged(forged)
            return []
        if not out:
            out.append(replace(base, rcpt=_clean(item.rcpts[0]) if item.rcpts else None))
        return out

    def store(self, items: Sequence[Incoming]) -> list[list[ReportRecord]]:
        """Parse and store ``items`` in one transaction; what each became."""
        return self.store_parsed([self.reports(item) for item in items])

    def store_parsed(self, groups: Sequence[list[InboundReport]]) -> list[list[ReportRecord]]:
        """Store already parsed reports in one transaction, grouped as given."""
        stored = self.outbox.store_reports([r for g in groups for r in g])
        out, i = [], 0
        for g in groups:
            out.append(stored[i : i + len(g)])
            i += len(g)
        return out


def _clean(value: str | None) -> str | None:
    """Text fit for any database column (PostgreSQL refuses NUL in TEXT)."""
    return None if value is None else value.replace("\x00", "\ufffd")


class _Committer:
    """Group commit: reports that arrive while a commit runs share the next one (parsing
    happens before, in the connections' handlers, so a commit holds only SQL)."""

    def __init__(self, receiver: Receiver, apply_pending: bool = True) -> None:
        self.receiver = receiver
        self.apply_pending = apply_pending
        self.queue: asyncio.Queue[
            tuple[list[InboundReport], asyncio.Future[list[ReportRecord]]]
        ] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._run())]
        if self.apply_pending:
            self.tasks.append(loop.create_task(self._pending()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.tasks = []

    async def _pending(self) -> None:
        while True:
            await asyncio.sleep(PENDING_INTERVAL)
            try:
                await asyncio.to_thread(self.receiver.outbox.apply_pending)
            except StorageError as exc:
                log.warning("applying pending bounces failed: %s", exc)

    async def submit(self, item: list[InboundReport]) -> list[ReportRecord]:
        future: asyncio.Future[list[ReportRecord]] = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_GROUP and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                results = await asyncio.to_thread(self.receiver.store_parsed, [i for i, _ in batch])
            except StorageError as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc=exc)
                    continue
                # one report the database refuses must not fail the others: one by one
                for item, future in batch:
                    try:
                        [result] = await asyncio.to_thread(self.receiver.store_parsed, [item])
                        _settle(future, result)
                    except StorageError as one:
                        _settle(future, exc=one)
                continue
            except Exception as exc:  # a bug: answer 451 (the sender retries), log it
                log.exception("storing %d report(s) failed", len(batch))
                for _, future in batch:
                    _settle(future, exc=exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)


def _settle(
    future: asyncio.Future[list[ReportRecord]],
    result: list[ReportRecord] | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result or [])


class _Handler:
    """aiosmtpd hooks: recipients checked at RCPT, the report stored at the final dot."""

    def __init__(self, receiver: Receiver, committer: _Committer) -> None:
        self.receiver = receiver
        self.committer = committer

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        verdict = self.receiver.verdict(address)
        if verdict == "unknown_domain":
            return "550 5.7.1 relaying denied: not a bounce domain of this service"
        if verdict == "bad_address":
            return "501 5.1.3 bad recipient address syntax"
        if verdict == "forged":
            log.warning("refused a report to a forged VERP address")
            try:
                await asyncio.to_thread(self.receiver.outbox.count_forged)
            except StorageError:
                log.warning("could not count a forged report", exc_info=True)
            return "550 5.7.1 no such bounce address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        item = Incoming(raw, envelope.mail_from, tuple(envelope.rcpt_tos))
        try:
            # a plain DSN is read in microseconds, here; anything else by the email
            # parser off the event loop, while the previous group's commit waits on fsync
            fast = parse_fast(raw)
            if fast is not None:
                reports = self.receiver.reports(item, fast)
            else:
                reports = await asyncio.to_thread(self.receiver.reports, item)
            stored = await self.committer.submit(reports) if reports else []
        except StorageError as exc:
            log.error("a report could not be stored: %s", exc)
            return "451 4.3.0 could not store the report; try again later"
        except Exception:
            return "451 4.3.0 internal error; try again later"
        ids = ",".join(str(r.id) for r in stored) or "none (forged)"
        return f"250 2.0.0 stored as report {ids}"


class InboundServer:
    """The SMTP server on one address; ``async with`` or :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        receiver: Receiver,
        host: str = "127.0.0.1",
        port: int = 2526,
        *,
        max_size: int = 2 * 1024 * 1024,
        hostname: str | None = None,
        reuse_port: bool = False,
        apply_pending: bool = True,
    ) -> None:
        """``reuse_port``: several processes share the port (SO_REUSEPORT; the kernel
        spreads connections); ``apply_pending``: this one applies the bounces that came
        before their message was recorded sent (one process of several is enough)."""
        self.receiver = receiver
        self.host = host
        self.port = port
        self.max_size = max_size
        self.hostname = hostname
        self.reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._committer = _Committer(receiver, apply_pending)
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {}
        if self.hostname:
            kwargs["hostname"] = self.hostname
        smtp = BlockDataSMTP(
            _Handler(self.receiver, self._committer),
            data_size_limit=self.max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="notifier inbound",
            **kwargs,
        )
        self._sessions.add(smtp)
        return smtp

    async def start(self) -> None:
        self._committer.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, reuse_port=self.reuse_port or None
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):  # open connections end with the server
                if session.transport is not None:
                    session.transport.close()
            await self._server.wait_closed()
            self._server = None
            await asyncio.sleep(0)  # let their handlers see the closed transports
        await self._committer.stop()

    async def serve_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> InboundServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def receiver_from_settings(settings: Any, outbox: Outbox) -> Receiver:
    """A receiver for the settings' key store and the brands' bounce domains."""
    from ..brands import BrandRegistry
    from .verp import verp_for

    brands = BrandRegistry(settings.brands_dir, settings.platform_brand)
    domains = [b.envelope_domain for b in brands.all()]
    return Receiver(outbox, verp_for(settings.keys_path), domains)
