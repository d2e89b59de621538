"""The delivery worker: claim due messages, sign them, send them, record what happened.

One worker process runs one asyncio loop:

* the **claimer** leases batches of due messages (``Outbox.claim``) whenever fewer than
  one batch is waiting; when nothing more is due it sleeps until new mail is announced
  (:mod:`notifier.outbox.wakeups`: in-process callback, PostgreSQL ``NOTIFY``, a FIFO
  on SQLite), until the earliest ``next_attempt_at``, or at most ``poll_interval`` (the
  fallback, should a wake be lost). Wakes coalesce: one arriving within ``wake_gap`` of
  the last claim waits out the gap, so a steady stream is claimed a few at a time,
  not one claim per message, and a burst in whole batches;
* ``concurrency`` **senders** take messages one at a time and walk each through the
  steps of a :class:`~notifier.worker.job.Job` — guard clauses in the manner of
  Postal's outgoing message processor: each step either decides the outcome and
  stops, or hands on to the next;
* the **recorder** (:mod:`.recorder`, a thread of its own) commits each outcome as
  soon as it is known: one transaction takes everything that finished meanwhile (a
  group commit of up to ``flush_size``, not waiting for the disk) while the next group
  gathers. A 250 waits milliseconds for its record, not a timer's tick nor a busy event
  loop: that wait is the window in which a ``kill -9`` makes the next worker send a
  message again. While ``max_unrecorded`` outcomes are unrecorded the senders wait;
* the **heartbeat** extends this worker's leases every ``lease / 3`` (through the
  recorder), so a lease only expires when the worker is gone (``kill -9``, a lost
  machine); then any worker reclaims the message and sends it again with the same
  Message-ID.

A database outage is logged when it starts and when it ends (:mod:`.health`), not on
every poll, and each loop retries with a doubling wait up to ``backoff_max``.

SIGTERM (or SIGINT) stops claiming, lets the sends in flight finish and be recorded,
and releases the messages claimed but not started, so another worker takes them at
once. Several workers share one queue; with PostgreSQL across machines.

``python -m notifier.worker`` runs one (``notifier worker`` is the same command).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .. import heap
from ..brands import Brand, BrandRegistry
from ..delivery.transport import Transport
from ..dns.alignment import organisational_domain
from ..dns.verify import DnsView, Verifier
from ..errors import NotifierError, StorageError
from ..outbox import Claim, Delivery, Outbox
from .health import Backoff, DatabaseHealth
from .job import Job
from .recorder import Recorder
from .stats import WorkerStats, worker_name

if TYPE_CHECKING:
    from ..config import Settings
    from ..feedback.dispatcher import Dispatcher
    from ..signing.dkim import Signer

log = logging.getLogger("notifier.worker")
T = TypeVar("T")

#: the shortest idle sleep (a due message another worker is claiming right now)
MIN_SLEEP = 0.005


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker process paces itself: the worker's slice of
    :class:`notifier.config.Settings` (``settings.worker_config()``)."""

    #: messages leased per claim
    batch_size: int = 100
    #: messages in flight at once (the relay pool's size bounds connections)
    concurrency: int = 16
    #: sleep between claims when nothing is due and no wake-up came (the fallback)
    poll_interval: float = 1.0
    #: a wake-up within this long of the last claim waits out the rest (coalescing)
    wake_gap: float = 0.004
    #: extend leases this often; default a third of the lease
    heartbeat_interval: float | None = None
    #: at most this many outcomes per transaction (they are written as soon as done),
    #: and at most this many unrecorded before the senders wait for the recorder
    flush_size: int = 100
    #: senders start no new send while this many 250s wait to be recorded: each is
    #: sent again if the worker is killed (at most ``flush_size``)
    max_unrecorded: int = 4
    #: unused since outcomes are written at once; kept so that callers setting it work
    flush_interval: float = 0.1
    #: during a database outage, retries wait ``poll_interval``, doubling up to this
    backoff_max: float = 5.0
    #: look for held messages of brands whose DNS is now verified; purge old evidence
    housekeeping_interval: float = 300.0
    #: re-read the brands' observed DNS state at most this often (see notifier.dns.verify)
    dns_refresh: float = 2.0
    #: look for brands due for their periodic DNS check this often (with a verifier)
    dns_poll: float = 60.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1 or self.flush_size < 1:
            raise NotifierError("worker: batch_size, concurrency and flush_size must be >= 1")
        if self.poll_interval <= 0 or self.flush_interval <= 0 or self.backoff_max <= 0:
            raise NotifierError(
                "worker: poll_interval, flush_interval and backoff_max must be positive"
            )


class Worker:
    """Delivers due messages from ``outbox`` through ``transport``."""

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        signer: Signer,
        *,
        config: WorkerConfig | None = None,
        brands: BrandRegistry,
        name: str | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        dns: DnsView | None = None,
        verifier: Verifier | None = None,
        webhooks: Dispatcher | None = None,
    ) -> None:
        self.webhooks = webhooks  # status webhooks, delivered beside the mail
        self.outbox = outbox
        self.transport = transport
        self.signer = signer
        self.config = config or WorkerConfig()
        self.brands = brands
        self.name = name or worker_name()
        self.clock = clock or outbox.clock
        self.rng = rng or random.Random()
        self.stats = WorkerStats()
        self.health = DatabaseHealth(self.name)
        self._db: ThreadPoolExecutor | None = None
        self._stop_requested = False
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._todo: asyncio.Queue[Claim | None] = asyncio.Queue()
        self._recorder: Recorder | None = None
        self._in_hand: set[int] = set()
        self._unrecorded = 0  # outcomes handed to the recorder, not yet committed
        self._room: asyncio.Event | None = None  # set when the recorder commits
        self._unstarted: list[int] = []
        self._active = 0
        self._last_housekeeping = -1e18
        self._space_wanted = False  # the claimer waits for the senders to make room
        self._until_idle = False
        self._last_claim = -1e18
        #: which checked brands sign as themselves (read at sign time by each job)
        self.dns = dns or DnsView(outbox, self.config.dns_refresh)
        #: runs the periodic DNS checks (None: this worker does not check brands)
        self.verifier = verifier
        self._dns_task: asyncio.Future[Any] | None = None
        self._last_dns_poll = -1e18

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, {self.outbox!r}, {self.transport!r})"

    # --- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming, finish what is in flight, release the rest (SIGTERM).

        Safe to call at any time, also before :meth:`run` has started (it then returns
        at once)."""
        self._stop_requested = True
        if self._stopping is not None and not self._stopping.is_set():
            log.info("worker %s: stopping; finishing %d send(s) in flight", self.name, self._active)
            self._stopping.set()
            assert self._wake is not None and self._room is not None
            self._wake.set()
            self._room.set()

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _db_call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a (blocking) outbox call on this worker's own database thread; its
        failure or success tells :attr:`health` (which logs an outage once)."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._db, partial(fn, *args))
        except StorageError as exc:
            self.health.failed(what, exc)
            raise
        self.health.ok(what)
        return result

    def _backoff(self) -> Backoff:
        return Backoff(self.config.poll_interval, self.config.backoff_max)

    # --- the loop ----------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Work until :meth:`stop` (or, with ``until_idle``, until nothing is due)."""
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._unrecorded = 0
        self._todo = asyncio.Queue()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        if self._stop_requested:
            self._stopping.set()
        log.info(
            "worker %s started (%s, batch %d, concurrency %d)",
            self.name,
            self.outbox.kind,
            self.config.batch_size,
            self.config.concurrency,
        )
        self._recorder = recorder = Recorder(
            self.outbox,
            self.name,
            self.health,
            self._backoff(),
            flush_size=self.config.flush_size,
            recorded=self._recorded,
        )
        recorder.start(asyncio.get_running_loop())
        self._until_idle = until_idle
        poke = self._poker(asyncio.get_running_loop(), self._wake)
        unregister = self.outbox.on_due(poke)  # this process's intake (notifier serve)
        try:
            listener = self.outbox.listen_due(poke)  # other processes' intake
        except (OSError, StorageError) as exc:
            log.warning("worker %s: no wake-ups (polling only): %s", self.name, exc)
            listener = None
        hooks = asyncio.create_task(self.webhooks.run()) if self.webhooks else None
        senders = [asyncio.create_task(self._sender()) for _ in range(self.config.concurrency)]
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await recorder.ready()  # nothing is claimed before its outcome can be recorded
            await self._housekeeping()
            await self._claimer(until_idle)
        finally:
            unregister()
            if listener is not None:
                await asyncio.to_thread(listener.close)
            self._stopping.set()
            self._room.set()
            for _ in senders:
                self._todo.put_nowait(None)
            await asyncio.gather(*senders, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await recorder.close()  # what is done is recorded (or, failing that, logged)
            self._recorder = None
            if hooks is not None and self.webhooks is not None:  # --until-idle: drain them too
                (self.webhooks.finish_when_idle if until_idle else self.webhooks.stop)()
                await asyncio.gather(hooks, return_exceptions=True)
            await self._release_unstarted()
            if self._dns_task is not None:
                await asyncio.gather(self._dns_task, return_exceptions=True)
                self._dns_task = None
            self._db.shutdown(wait=True)
            self._db = None
            self._stop_requested = False
            log.info("worker %s stopped: %s", self.name, self.stats.as_dict())
        return self.stats

    @staticmethod
    def _poker(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> Callable[[], None]:
        """A wake-up callable from any thread (the intake's, a listener's)."""

        def poke() -> None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: nobody to wake
                pass

        return poke

    async def _claimer(self, until_idle: bool) -> None:
        assert self._stopping is not None and self._wake is not None
        cfg = self.config
        backoff = self._backoff()
        while not self._stopping.is_set():
            # cleared before the claim: a wake that comes during it claims again
            self._wake.clear()
            await self._maybe_housekeeping()
            self._maybe_check_dns()
            if self._todo.qsize() < cfg.batch_size:
                self._space_wanted = False
                self._last_claim = time.monotonic()
                try:
                    await self._follow_dns()
                    claims = await self._db_call(
                        "claim", self.outbox.claim, self.name, cfg.batch_size
                    )
                    if any(self.dns.verified(c.sign_brand) is False for c in claims):
                        # e.g. held mail released by a check a moment ago: make sure the
                        # copy is not older than the claim before falling back
                        await self._follow_dns(force=True)
                except StorageError:
                    await self._sleep(backoff.next(), wake=False)
                    continue
                backoff.reset()
                for c in claims:
                    self._in_hand.add(c.id)
                    self._todo.put_nowait(c)
                self.stats.claimed += len(claims)
                if len(claims) >= cfg.batch_size or (claims and until_idle):
                    continue  # more may be due
                if until_idle:
                    if not claims and self._todo.empty() and self._active == 0:
                        return
                    await self._sleep(cfg.poll_interval)
                    continue
                await self._idle()  # all that was due is claimed
            else:
                self._space_wanted = True
                await self._sleep(cfg.poll_interval)

    async def _idle(self) -> None:
        """Sleep until mail is announced, the earliest deferred message is due, or the
        fallback poll; then, if the last claim was less than ``wake_gap`` ago, wait out
        the gap so that the wakes of a steady stream share a claim."""
        cfg = self.config
        timeout = cfg.poll_interval
        try:
            due = await self._db_call("next due", self.outbox.next_due)
        except StorageError:
            due = None
        if due is not None:
            timeout = min(timeout, max(MIN_SLEEP, due - self.clock()))
        await self._sleep(timeout)
        gap = cfg.wake_gap - (time.monotonic() - self._last_claim)
        if gap > 0 and not self.stopping:
            await asyncio.sleep(gap)

    async def _sleep(self, seconds: float, *, wake: bool = True) -> None:
        """Sleep until ``seconds`` pass, stop, or (with ``wake``) new mail or a sender
        that frees room wakes the claimer (the claimer clears the event before it
        claims, so a wake that came since is not lost)."""
        assert self._wake is not None and self._stopping is not None
        if self._stopping.is_set():
            return
        try:
            event = self._wake if wake else self._stopping
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass

    async def _sender(self) -> None:
        assert self._stopping is not None and self._wake is not None
        assert self._recorder is not None
        while True:
            claim = await self._todo.get()
            if claim is None:
                return
            if self._stopping.is_set():
                self._unstarted.append(claim.id)
                continue
            self._active += 1
            try:
                delivery = await Job(self, claim).run()
            finally:
                self._active -= 1
            self._recorder.add(delivery)  # committed at once, on the recorder's thread
            self._unrecorded += 1
            if (self._space_wanted or self._until_idle) and (
                self._todo.qsize() < self.config.batch_size
            ):
                self._wake.set()
            # let the other senders whose 250 has arrived hand theirs over too before
            # this one signs its next message (milliseconds of CPU each)
            await asyncio.sleep(0)
            await self._wait_for_room()

    async def ready_to_send(self) -> None:
        """The gate every send passes once it holds a connection (Envelope.ready):
        senders that queued for a connection while outcomes piled up would otherwise all
        send, each adding a 250 that a ``kill -9`` makes the next worker send again.
        With it, a killed worker leaves at most ``max_unrecorded`` plus one per
        connection unrecorded, however slow the commits (a loaded machine)."""
        await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """Start nothing more while ``max_unrecorded`` outcomes wait to be recorded (a
        slow commit on a loaded machine, a database outage): every 250 not yet recorded
        is sent again if the worker dies, so their number stays small. Under load the
        recorder takes them all in one commit, so the senders rarely wait long."""
        assert self._room is not None and self._stopping is not None
        bound = min(self.config.flush_size, self.config.max_unrecorded)
        while self._unrecorded >= bound and not self._stopping.is_set():
            self._room.clear()
            await self._room.wait()

    def _recorded(self, batch: list[Delivery], lost: list[int]) -> None:
        """On the loop, once the recorder has committed ``batch``."""
        self._unrecorded -= len(batch)
        if self._room is not None:
            self._room.set()
        for d in batch:
            self._in_hand.discard(d.id)
            self.stats.count(d.status)
            if d.attempt is not None and d.attempt.possible_duplicate:
                self.stats.possible_duplicates += 1
        self.stats.lost_leases += len(lost)

    async def _release_unstarted(self) -> None:
        ids = list(self._unstarted)
        self._unstarted.clear()
        while not self._todo.empty():
            item = self._todo.get_nowait()
            if item is not None:
                ids.append(item.id)
        if not ids:
            return
        try:
            released = await self._db_call("release", self.outbox.release, self.name, ids)
        except StorageError as exc:
            log.error(
                "worker %s: releasing %d message(s) failed (they return when the "
                "lease expires): %s",
                self.name,
                len(ids),
                exc,
            )
            return
        self.stats.released += released
        for i in ids:
            self._in_hand.discard(i)
        log.info("worker %s: released %d unstarted message(s)", self.name, released)

    async def _heartbeat(self) -> None:
        interval = self.config.heartbeat_interval or self.outbox.config.lease / 3
        while True:
            await asyncio.sleep(interval)
            if self._in_hand and self._recorder is not None:
                # on the recorder's thread: never races a commit
                self._recorder.heartbeat(self._in_hand)

    async def _maybe_housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping >= self.config.housekeeping_interval:
            await self._housekeeping()

    async def _follow_dns(self, *, force: bool = False) -> None:
        """Re-read the brands' observed DNS state (``force``: now, else when the copy is
        older than ``dns_refresh``) on the database thread. A failure keeps the old copy
        and is left to the claim's own bookkeeping of database health."""
        if not force and not self.dns.stale():
            return  # the usual case: no hop to the database thread
        loop = asyncio.get_running_loop()
        read = partial(self.dns.maybe_refresh, force=force)
        await loop.run_in_executor(self._db, read)

    def _maybe_check_dns(self) -> None:
        """Every ``dns_poll``, check the brands due (claimed: one worker per brand and
        period) in a thread of their own: lookups must not hold up sending."""
        if self.verifier is None or (self._dns_task is not None and not self._dns_task.done()):
            return
        if time.monotonic() - self._last_dns_poll < self.config.dns_poll:
            return
        self._last_dns_poll = time.monotonic()
        task = asyncio.get_running_loop().run_in_executor(
            None, self.verifier.run_due, self.name, lambda: self._stop_requested
        )
        task.add_done_callback(_log_dns_failure)
        self._dns_task = task

    def _signs_as_itself(self, brand: Brand) -> bool:
        observed = self.dns.verified(brand.id)
        return brand.platform or (brand.dns_verified if observed is None else observed)

    async def _housekeeping(self) -> None:
        """Queue held mail of brands whose DNS is now verified; purge expired evidence."""
        self._last_housekeeping = time.monotonic()
        verified = [b.id for b in self.brands.all() if self._signs_as_itself(b)]
        try:
            released = await self._db_call("housekeeping", self.outbox.release_held, verified)
            if released:
                log.info("released %d held message(s) of verified brands", released)
            purged = await self._db_call("housekeeping", self.outbox.purge)
            if purged:
                log.info("purged %d message(s) past the retention period", purged)
        except StorageError:
            pass  # logged by self.health; tried again at the next interval


def _log_dns_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, StorageError):
            log.warning("periodic DNS checks: %s", exc)
        else:
            log.error("periodic DNS checks failed", exc_info=exc)


# --- process entry ---------------------------------------------------------------------


def make_signer(settings: Settings) -> Signer:
    from ..signing.dkim import Signer
    from ..signing.keys import KeyStore

    return Signer(KeyStore(settings.keys_path))


async def serve(
    settings: Settings,
    *,
    config: WorkerConfig | None = None,
    smtp_url: str | None = None,
    until_idle: bool = False,
    outbox: Outbox | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> WorkerStats:
    """Run one worker with the settings' database, relay and keys until one of
    ``signals`` (a worker process of ``notifier serve`` leaves SIGINT to its server)."""
    from ..delivery import transport_from_url
    from ..feedback.dispatcher import dispatcher_from_settings
    from ..outbox import open_outbox

    own_outbox = outbox is None
    box = outbox or open_outbox(settings)
    try:
        transport = transport_from_url(smtp_url or settings.smtp_url, settings.mail_dir)
    except BaseException:
        if own_outbox:
            box.close()
        raise
    brands = BrandRegistry(settings.brands_dir, settings.platform_brand)
    worker = Worker(
        box,
        transport,
        make_signer(settings),
        config=config or settings.worker_config(),
        brands=brands,
        webhooks=dispatcher_from_settings(settings, box),
        # a one-off drain (--until-idle) leaves the periodic DNS checks to the workers
        verifier=(
            None if until_idle or not settings.dns_recheck else Verifier(settings, brands, box)
        ),
    )
    organisational_domain(brands.platform.mail_domain)  # the public suffix list, loaded
    heap.settle()  # start-up's objects out of the collector's full passes
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, worker.stop)
    try:
        return await worker.run(until_idle=until_idle)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await transport.close()
        if own_outbox:
            box.close()


def main(argv: Sequence[str] | None = None) -> int:
    from ..config import Settings

    parser = argparse.ArgumentParser(
        prog="python -m notifier.worker", description=__doc__ and __doc__.splitlines()[0]
    )
    parser.add_argument("--batch", type=int, default=None, help="messages per claim")
    parser.add_argument("--concurrency", type=int, default=None, help="sends in flight")
    parser.add_argument("--poll", type=float, default=None, help="idle poll interval (s)")
    parser.add_argument("--smtp", default=None, help="relay URL (default NOTIFIER_SMTP_URL)")
    parser.add_argument("--until-idle", action="store_true", help="exit when nothing is due")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    try:
        settings = Settings.load()
        config = settings.worker_config(
            batch_size=args.batch, concurrency=args.concurrency, poll_interval=args.poll
        )
        asyncio.run(serve(settings, config=config, smtp_url=args.smtp, until_idle=args.until_idle))
    except NotifierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
