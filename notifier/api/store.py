"""What the API needs from the outbox, in one narrow async interface.

:class:`OutboxStore` wraps :class:`notifier.outbox.Outbox` (synchronous, a connection
per thread) and runs each call in a worker thread, at most :data:`THREADS` at once.

Message search pages with an opaque cursor over the outbox's ``search``; ``/metrics``
reads the outbox's counters and waiting messages (``metrics``).

The HTTP batch endpoint promises that one bad item never rejects the others:
:meth:`OutboxStore.accept_batch` uses the outbox's ``accept_each``, which stores the
valid items in one transaction and returns each bad item's error in its place. Large
batches are validated and rendered on every core (:mod:`notifier.intake.preparer`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from ..compose.pipeline import Pipeline
from ..config import Settings
from ..dns.verify import DnsView, Verifier
from ..errors import FieldError, NotifierError, StorageError, ValidationError
from ..intake.accept import Intake, make_preparer
from ..intake.group_commit import GROUP_MAX, GroupCommit
from ..outbox import OutboxConfig, open_outbox

if TYPE_CHECKING:
    from ..brands import Brand
    from ..dns.checks import Check
    from ..outbox import DnsRecorded

T = TypeVar("T")

#: outbox calls running at once (each thread keeps its own database connection)
THREADS = 8


@dataclass(frozen=True, slots=True)
class Accepted:
    """One accepted (or recognised duplicate) event."""

    id: int
    status: str
    language: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Stats:
    """Figures for ``/metrics``."""

    #: ``(brand, event, name) → count`` of the outbox's counters (accepted, sent, …)
    counters: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    #: ``(brand, event, status) → messages`` waiting (queued, sending, deferred, held)
    live: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    queue_depth: int = 0
    #: cumulative histogram of accept-to-sent seconds: ``[(upper bound, count), ...]``
    latency_buckets: Sequence[tuple[float, int]] = ()
    latency_sum: float = 0.0
    latency_count: int = 0
    #: ``(brand, "all") → suppressed addresses``
    suppressed: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: brand → its observed DNS state (brands checked at least once)
    dns_states: Mapping[str, str] = field(default_factory=dict)
    #: ``(brand, from, to) → count`` of DNS state transitions
    dns_transitions: Mapping[tuple[str, str, str], int] = field(default_factory=dict)


class Store(Protocol):
    async def accept(self, raw: Any) -> Accepted: ...

    async def accept_batch(self, raws: Sequence[Any]) -> list[Accepted | NotifierError]: ...

    async def message(self, message_id: int) -> dict[str, Any] | None: ...

    async def messages(
        self,
        *,
        brand: str | None,
        status: str | None,
        event: str | None,
        recipient: str | None,
        cursor: str | None,
        limit: int,
        domain: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def retry(self, message_id: int) -> dict[str, Any] | None: ...

    async def stats(self) -> Stats: ...

    async def suppress(
        self, brand: str, email: str, reason: str, unsubscribed_from: str | None = None
    ) -> None: ...

    async def check_dns(self, brand: Brand) -> tuple[list[Check], DnsRecorded]: ...

    async def ping(self) -> None: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[Any]: ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Unavailable:
    """The store when the outbox could not be opened: everything is a 503."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self) -> StorageError:
        return StorageError(self.reason)

    async def accept(self, raw: Any) -> Accepted:
        raise self._fail()

    async def accept_batch(self, raws: Sequence[Any]) -> list[Accepted | NotifierError]:
        raise self._fail()

    async def message(self, message_id: int) -> dict[str, Any] | None:
        raise self._fail()

    async def messages(self, **_: Any) -> tuple[list[dict[str, Any]], str | None]:
        raise self._fail()

    async def retry(self, message_id: int) -> dict[str, Any] | None:
        raise self._fail()

    async def stats(self) -> Stats:
        raise self._fail()

    async def suppress(
        self, brand: str, email: str, reason: str, unsubscribed_from: str | None = None
    ) -> None:
        raise self._fail()

    async def check_dns(self, brand: Brand) -> tuple[list[Check], DnsRecorded]:
        raise self._fail()

    async def ping(self) -> None:
        raise self._fail()

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        raise self._fail()
        yield  # pragma: no cover

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise self._fail()


# --- views ------------------------------------------------------------------------------

_PUBLIC_ATTEMPT = ("at", "outcome", "host", "code", "enhanced", "text", "possible_duplicate")
_PUBLIC = (
    "id",
    "brand",
    "sender_brand",
    "event",
    "mandatory",
    "domain",
    "recipient",
    "language",
    "status",
    "reason",
    "idempotency_key",
    "message_id",
    "attempts",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "deadline",
    "sent_at",
    "possible_duplicate",
    "dkim_domain",
    "dkim_selector",
)


def message_view(doc: Mapping[str, Any], *, full: bool = False) -> dict[str, Any]:
    """A message as the API shows it: state, attempts with their SMTP replies,
    Message-ID and language. ``full`` (admin) adds leases, workers and hashes."""
    if full:
        return dict(doc)
    view = {k: doc.get(k) for k in _PUBLIC}
    view["attempt_log"] = [
        {k: a.get(k) for k in _PUBLIC_ATTEMPT} for a in doc.get("attempt_log", [])
    ]
    if "reports" in doc:  # one message's view (not the list): bounces and complaints
        view["reports"] = doc["reports"]
    return view


def encode_cursor(message_id: int) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps({"before": message_id}).encode()).decode().rstrip("=")
    )


def decode_cursor(cursor: str) -> int:
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        before = doc["before"]
        if not isinstance(before, int) or isinstance(before, bool) or not 0 < before < 2**63:
            raise ValueError
        return before
    except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError([FieldError("cursor", "not a cursor from this API")]) from None


_ITEM = re.compile(r"^events\[(\d+)\]")


class OutboxStore:
    """:class:`Store` over a synchronous :class:`notifier.intake.accept.Intake` and its
    :class:`notifier.outbox.Outbox`, opened on first use (and again after a failed
    open: a database down at start-up is not fatal)."""

    def __init__(
        self,
        opener: Callable[[], Intake],
        settings: Settings | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self._opener = opener
        #: with both, the brands' observed DNS state reaches ``pipeline`` (and checks run)
        self._settings = settings
        self._pipeline = pipeline
        self._dns: DnsView | None = None
        self._intake: Intake | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(THREADS)
        self._committer: GroupCommit[Accepted | NotifierError] | None = None

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            with self._lock:
                if self._intake is None:
                    self._intake = self._opener()
        return self._intake

    @property
    def outbox(self) -> Any:
        return self.intake.outbox

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        """The outbox's transaction (for the token store, which shares the database)."""
        with self.outbox.transaction(write=write) as cur:
            yield cur

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement on the outbox's database (token lookups)."""
        rows: list[tuple[Any, ...]] = self.outbox.read(sql, params)
        return rows

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self._limiter
        )

    # --- intake ----------------------------------------------------------------------

    async def accept(self, raw: Any) -> Accepted:
        """One event, committed together with whatever else arrived meanwhile (group
        commit: one durable commit for many concurrent requests)."""
        if self._committer is None:
            self._committer = GroupCommit(
                lambda raws: self._run(self._accept_batch, raws),
                lambda: self._intake.max_batch if self._intake else GROUP_MAX,
            )
        outcome = await self._committer.submit(raw)
        if isinstance(outcome, ValidationError):
            raise ValidationError(
                [FieldError(_strip_item(e.loc), e.message) for e in outcome.errors]
            )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def accept_batch(self, raws: Sequence[Any]) -> list[Accepted | NotifierError]:
        return await self._run(self._accept_batch, list(raws))

    def _dns_view(self) -> DnsView | None:
        """The brands' observed DNS state for this process's pipeline (and, through it,
        the intake processes): re-read at most every ``dns_refresh`` seconds."""
        if self._dns is None and self._settings is not None and self._pipeline is not None:
            self._dns = DnsView(
                self.outbox, self._settings.dns_refresh, on_change=self._pipeline.observe_dns
            )
        return self._dns

    def _accept_batch(self, raws: list[Any]) -> list[Accepted | NotifierError]:
        view = self._dns_view()
        if view is not None:
            view.maybe_refresh()
        return [
            r if isinstance(r, NotifierError) else _accepted(r)
            for r in self.intake.accept_each(raws, prefix="events")
        ]

    def start(self) -> None:
        """Open the outbox and start its intake workers, if it has any (at start-up, so
        that the first large batch does not wait for them)."""
        self.intake.preparer.start()

    # --- reading ---------------------------------------------------------------------

    async def message(self, message_id: int) -> dict[str, Any] | None:
        return await self._run(self._message, message_id)

    def _message(self, message_id: int) -> dict[str, Any] | None:
        from ..outbox import MessageNotFound

        try:
            doc: dict[str, Any] = self.outbox.get(message_id).as_dict()
        except MessageNotFound:
            return None
        # bounces and complaints received for it (notifier inbound), as evidence
        doc["reports"] = [r.summary() for r in self.outbox.message_reports(message_id)]
        return doc

    async def messages(
        self,
        *,
        brand: str | None,
        status: str | None,
        event: str | None,
        recipient: str | None,
        cursor: str | None,
        limit: int,
        domain: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        before = decode_cursor(cursor) if cursor else None
        return await self._run(
            self._messages, brand, status, event, recipient, before, limit, domain
        )

    def _messages(
        self,
        brand: str | None,
        status: str | None,
        event: str | None,
        recipient: str | None,
        before: int | None,
        limit: int,
        domain: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        records = self.outbox.search(
            brand=brand,
            status=status,
            event=event,
            recipient=recipient,
            domain=domain,
            before=before,
            limit=limit + 1,
        )
        more = len(records) > limit
        records = records[:limit]
        items = [r.as_dict() for r in records]
        return items, (encode_cursor(records[-1].id) if more and records else None)

    async def retry(self, message_id: int) -> dict[str, Any] | None:
        return await self._run(self._retry, message_id)

    def _retry(self, message_id: int) -> dict[str, Any] | None:
        from ..outbox import MessageNotFound

        try:
            doc: dict[str, Any] = self.outbox.retry(message_id).as_dict()
            return doc
        except MessageNotFound:
            return None

    async def stats(self) -> Stats:
        return await self._run(self._stats)

    def _stats(self) -> Stats:
        m = self.outbox.metrics()
        dns_states, dns_transitions = self.outbox.brand_dns_metrics()
        return Stats(
            dns_states=dns_states,
            dns_transitions=dns_transitions,
            counters={
                key: int(value)
                for key, value in m.counters.items()
                if not key[2].startswith("latency")
            },
            live=dict(m.live),
            queue_depth=sum(
                n for (_, _, s), n in m.live.items() if s in ("queued", "deferred", "sending")
            ),
            latency_buckets=[(b, int(n)) for b, n in m.latency_buckets()],
            latency_sum=m.total("latency_sum"),
            latency_count=int(m.total("sent")),
            suppressed={(brand, "all"): n for brand, n in m.suppressed.items()},
        )

    # --- suppression, health -----------------------------------------------------------

    async def suppress(
        self, brand: str, email: str, reason: str, unsubscribed_from: str | None = None
    ) -> None:
        """With ``unsubscribed_from`` (the recipient's own choice, one-click), the
        suppression also reports ``message.unsubscribed`` (status webhooks)."""
        if unsubscribed_from is None:
            await self._run(self.outbox.suppress, brand, email, reason)
        else:
            await self._run(self.outbox.unsubscribe, brand, email, unsubscribed_from, reason)

    async def check_dns(self, brand: Brand) -> tuple[list[Check], DnsRecorded]:
        """Check ``brand``'s DNS now and record it; this process follows at once."""
        return await self._run(self._check_dns, brand)

    def _check_dns(self, brand: Brand) -> tuple[list[Check], DnsRecorded]:
        assert self._settings is not None and self._pipeline is not None, "no settings"
        verifier = Verifier(self._settings, self._pipeline.brands, self.outbox)
        result = verifier.check_and_record(brand, source="api")
        view = self._dns_view()
        if view is not None:
            view.refresh()
        return result

    async def ping(self) -> None:
        await self._run(self._ping)

    def _ping(self) -> None:
        with self.outbox.transaction(write=False) as cur:
            cur.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.close()
            self._committer = None
        if self._intake is not None:
            self._intake.close()
            self._intake.outbox.close()


def _strip_item(loc: str) -> str:
    """``events[3].data.x`` → ``data.x``; ``events[3]`` → ``body``."""
    m = _ITEM.match(loc)
    if not m:
        return loc
    rest = loc[m.end() :].lstrip(".")
    return rest or "body"


def _accepted(result: Any) -> Accepted:
    return Accepted(
        id=int(result.id),
        status=str(result.status),
        language=str(result.language),
        duplicate=bool(result.duplicate),
    )


def open_store(
    settings: Settings, pipeline: Pipeline | None = None, config: OutboxConfig | None = None
) -> Store:
    """The outbox behind :class:`Store` (opened on first use), with an intake that
    prepares events through ``pipeline``; ``config`` defaults to the settings' outbox
    slice."""

    pipeline = pipeline or Pipeline(settings)

    def opener() -> Intake:
        cfg = config or settings.outbox_config()
        outbox = open_outbox(settings, cfg)
        preparer = make_preparer(settings, pipeline, cfg.intake_processes)
        return Intake(outbox, preparer, max_batch=cfg.max_batch)

    return OutboxStore(opener, settings, pipeline)
