"""Recording outcomes the moment they are known: a group commit on a thread of its own.

A message the relay has answered 250 to but whose outcome is not yet committed is sent
again if the worker dies (``kill -9``, a lost machine): the next worker finds its lease
expired. That window decides how many duplicates a crash makes.

So the senders hand each outcome to the :class:`Recorder` without waiting, and its own
thread (with its own database connection) commits at once whatever is waiting, up to
``flush_size`` per transaction; outcomes that finish during a commit gather for the
next one — the thread is always either committing or waiting for the next outcome,
never for a timer. The commit does not wait for the disk (``Outbox.complete``): the
fsync, not the work, was most of the window (a small PostgreSQL commit: p50 4 ms with
it, 0.2 ms without; tens of ms on a busy disk), and an outcome lost in a crash of the
database machine only means a message sent again, flagged ``possible_duplicate``,
exactly as after a killed worker. Under load a commit
takes many outcomes, so throughput does not suffer; the senders start no new send
while ``max_unrecorded`` outcomes wait (a slow commit on a loaded machine, a database
outage), so a worker never holds more 250s than that which a crash would repeat. On
PostgreSQL ``complete`` is pipelined: on a loaded machine each round trip waits for a
CPU and for the GIL, and those waits, not the work, made the window. Before
the first claim the recorder opens and warms its connection (``Outbox.warm_up``): a
fresh PostgreSQL backend's first commit took longer than a hundred sends under load.
The heartbeat goes through the same thread, so it never races a commit over the same
rows, and extends only the leases of messages still in hand.

During an outage the thread retries with a :class:`~.health.Backoff` and keeps the
outcomes (a commit whose answer was lost is simply repeated: ``complete`` stores an
outcome once); when the worker stops it makes a few last tries, after which the leases
expire and the messages are sent again with the same Message-ID, flagged
``possible_duplicate``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import StorageError
from .health import Backoff, DatabaseHealth

if TYPE_CHECKING:
    from ..outbox import Delivery, Outbox

log = logging.getLogger("notifier.worker")

#: tries after stop() before giving up on outcomes that cannot be recorded
FINAL_TRIES = 5


class Recorder:
    """Commits outcomes (and heartbeats) for one worker on a thread of its own."""

    def __init__(
        self,
        outbox: Outbox,
        worker: str,
        health: DatabaseHealth,
        backoff: Backoff,
        *,
        flush_size: int,
        recorded: Callable[[list[Delivery], list[int]], None],
    ) -> None:
        self.outbox = outbox
        self.worker = worker
        self.health = health
        self.backoff = backoff
        self.flush_size = flush_size
        self._recorded = recorded  # called on the event loop: (batch, lost lease ids)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._pending: list[Delivery] = []
        self._beat: list[int] | None = None  # the ids whose leases to extend
        self._closing = False
        self._wakeup = threading.Event()  # ends a backoff wait early (close)
        self._warm = threading.Event()  # set once the first connection is ready (or failed)
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="outbox-recorder", daemon=True)
        self._thread.start()

    async def ready(self) -> None:
        """Wait until the recorder's connection is open and warm (or failed to open: the
        outage is then reported by the commits), so that the first outcome is
        recorded as quickly as the next."""
        await asyncio.to_thread(self._warm.wait)

    def add(self, delivery: Delivery) -> None:
        """Record ``delivery`` as soon as possible (never waits for the database)."""
        with self._cond:
            self._pending.append(delivery)
            self._cond.notify()

    def heartbeat(self, ids: Iterable[int]) -> None:
        """Extend the leases of ``ids`` (the messages in hand) at the next opportunity."""
        with self._cond:
            self._beat = list(ids)
            self._cond.notify()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._pending)

    async def close(self) -> None:
        """Record what is waiting (a few tries if the database is down), then stop.
        The last hand-backs to the loop were scheduled before the join ends, so they
        have run when this returns."""
        with self._cond:
            self._closing = True
            self._beat = None
            self._cond.notify()
        self._wakeup.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # --- on the recorder thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            self.outbox.warm_up()
        except Exception as exc:  # the first commit tries again and reports an outage
            log.debug("worker %s: warming up the recorder failed: %s", self.worker, exc)
        finally:
            self._warm.set()
        failed_after_close = 0
        while True:
            with self._cond:
                while not (self._pending or self._beat is not None or self._closing):
                    self._cond.wait()
                if not (self._pending or self._beat is not None):
                    return  # closing, and everything is written
                batch = self._pending[: self.flush_size]
                del self._pending[: self.flush_size]
                beat, self._beat = self._beat, None
                closing = self._closing
            try:
                lost = self.outbox.complete(self.worker, batch) if batch else []
                if beat:
                    self.outbox.heartbeat(self.worker, ids=beat)
            except Exception as exc:
                if isinstance(exc, StorageError):
                    self.health.failed("recording outcomes", exc)
                else:  # a bug must not silently stop the recording of outcomes
                    log.exception(
                        "worker %s: recording %d outcome(s) failed", self.worker, len(batch)
                    )
                with self._cond:
                    self._pending[:0] = batch
                    if self._beat is None and not self._closing:
                        self._beat = beat
                if closing:
                    failed_after_close += 1
                    if failed_after_close >= FINAL_TRIES:
                        self._give_up()
                        return
                    time.sleep(0.5 * failed_after_close)
                else:
                    self._wakeup.wait(self.backoff.next())
                continue
            self.health.ok("recording outcomes")
            self.backoff.reset()
            if batch:
                self._hand_back(batch, lost)

    def _hand_back(self, batch: list[Delivery], lost: list[int]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._recorded, batch, lost)
        except RuntimeError:  # the loop closed meanwhile: the outcomes are stored anyway
            pass

    def _give_up(self) -> None:
        with self._cond:
            left, self._pending = len(self._pending), []
        log.error(
            "worker %s: %d outcome(s) could not be recorded; their leases expire and the "
            "messages are sent again (same Message-ID)",
            self.worker,
            left,
        )
