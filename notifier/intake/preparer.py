"""Turning raw events into messages ready to store: in this process, or on every core.

Accepting an event means validating and rendering it (a render error must reach the
caller), which costs about half a millisecond of CPU per event, all in Python. One
process uses one core, so a batch of a thousand events would leave the others idle;
:class:`PoolPreparer` splits large batches over worker processes, each with its own
:class:`~notifier.compose.pipeline.Pipeline` built from the same settings, and gathers the
results in order. Every item goes through the one compose sequence
(:meth:`Pipeline.prepare`) and comes back as a lean :class:`NewMessage` — the outbox's
row, without the rendered parts a worker process would otherwise pickle back. Only
CPU work goes to the workers: storing stays in the caller's transaction, so
durability and idempotency do not depend on them.

Small lists go to the workers too (a group commit of single events, even a lone
event): this process's one interpreter is the scarce CPU — it also parses every
request and, in ``notifier serve``, runs the delivery worker. At 300 single events a
second the API process took 0.75 of a core rendering them itself, 0.54 with the
groups in the workers (which took 0.35: the round trips cost CPU, but on other
cores). Rendering the groups in-process, serve delivered about 55 messages a second
while it accepted 300 single events a second (the rest waited for the posting to
stop); with the groups in the workers, about 110 (``bench/latency.py``); at 2 events
a second the round trip adds under a millisecond. Without workers
(``NOTIFIER_INTAKE_PROCESSES=0``, one core) everything stays in-process.

A worker that dies (killed, out of memory) breaks the pool: the batch is then
prepared in-process, and so is everything else for the next half minute, after which
a new pool is started; a crash costs speed, never an accepted event.

Each item comes back as a prepared message or as the error that item raised (a
:class:`~notifier.errors.NotifierError`, pickled by state; any other exception, a bug,
as that item's :class:`~notifier.errors.InternalError`), so the caller decides
whether one bad item rejects a batch (``Intake.accept_batch``) or only itself
(``Intake.accept_each``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol

from .. import heap
from ..compose.identity import event_domain, natural_key, request_hash
from ..compose.pipeline import Composed, Pipeline
from ..errors import InternalError, NotifierError
from ..outbox.model import NewMessage
from ..parent import follow_parent

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("notifier.intake")

#: lists shorter than this are prepared in-process (see the module's docstring)
POOL_MIN_ITEMS = 1
#: smallest share of a list one worker task gets (a group of 32 single events goes
#: to two workers; a batch of 1,000 is cut in two tasks per worker)
CHUNK_MIN_ITEMS = 8
#: after the pool failed, prepare in-process this long before starting a new one
RETRY_SECONDS = 30.0


class Preparer(Protocol):
    def prepare(self, raws: Sequence[Any], locs: Sequence[str]) -> list[NewMessage | NotifierError]:
        """One result per raw event, in order; ``locs`` prefix each item's error paths
        (``events[3]``), ``""`` for a lone event."""
        ...

    def start(self) -> list[int]:
        """Start any worker processes now; their process ids."""
        ...

    def close(self) -> None: ...


def new_message(composed: Composed) -> NewMessage:
    """A composed message → the row the outbox stores."""
    event, sender, out = composed.event, composed.sender, composed.outgoing
    domain = event_domain(event)
    key = event.idempotency_key
    return NewMessage(
        brand=event.brand_id,
        sender_brand=sender.brand.id,
        sign_brand=sender.signer.id,
        event=event.name,
        mandatory=event.spec.mandatory,
        domain=domain,
        recipient=out.rcpt_to.lower(),
        language=composed.rendered.language,
        idempotency_key=key,
        request_hash=request_hash(event),
        dedupe_key=None if key else natural_key(event, domain),
        message_id=out.message_id,
        mail_from=out.mail_from,
        rcpt_to=out.rcpt_to,
        data=out.data,
        data_sha256=out.sha256,
        held=sender.held,
        hold_reason=sender.reason if sender.held else None,
        cancels=tuple(event.spec.cancels),
    )


class InlinePreparer:
    """Validates and composes in the calling thread."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def prepare(self, raws: Sequence[Any], locs: Sequence[str]) -> list[NewMessage | NotifierError]:
        """Each item's message or error; an unexpected exception (a bug) is that item's
        :class:`InternalError`, never the list's: one event must not cost the others."""
        out: list[NewMessage | NotifierError] = []
        for raw, loc in zip(raws, locs, strict=True):
            try:
                out.append(new_message(self.pipeline.prepare(raw, loc)))
            except NotifierError as exc:
                out.append(exc)
            except Exception as exc:  # logged, with its trace, by whoever answers it
                out.append(InternalError.of(exc, loc))
        return out

    def start(self) -> list[int]:
        return []

    def close(self) -> None:
        return None


def auto_processes() -> int:
    """Worker processes for intake when not configured: one per core, none on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 else 0


class PoolPreparer:
    """Prepares large lists in ``processes`` worker processes (``spawn``ed: the caller
    runs threads, which ``fork`` must not copy); small ones via ``inline``."""

    def __init__(
        self,
        settings: Settings,
        processes: int,
        inline: InlinePreparer,
        *,
        min_items: int = POOL_MIN_ITEMS,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.settings = settings
        self.processes = processes
        self.inline = inline
        self.min_items = min_items
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._warm_up = False
        self._retry_at = 0.0  # monotonic time; while before it, the pool is not retried

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.settings, self._warm_up),
                )
            return self._pool

    def start(self) -> list[int]:
        """Start the workers now, each compiling every template as it starts (and again
        after a crash), so that no batch waits for that; return their process ids."""
        self._warm_up = True
        pool: ProcessPoolExecutor | None = None
        try:
            pool = self._executor()
            for future in [pool.submit(_ping) for _ in range(self.processes)]:
                future.result()
        except (BrokenProcessPool, OSError) as exc:
            # not fatal: batches are prepared in-process, and the next one tries again
            log.warning("intake processes did not start (%s); preparing in-process", exc)
            self._discard(pool)
            return []
        self._retry_at = 0.0
        pids = sorted(pool._processes or ())  # no public way to list them
        log.info("intake: %d worker processes (%s)", self.processes, ", ".join(map(str, pids)))
        return pids

    def prepare(self, raws: Sequence[Any], locs: Sequence[str]) -> list[NewMessage | NotifierError]:
        if len(raws) < self.min_items or time.monotonic() < self._retry_at:
            return self.inline.prepare(raws, locs)
        size = max(CHUNK_MIN_ITEMS, -(-len(raws) // (self.processes * 2)))
        pool: ProcessPoolExecutor | None = None
        try:
            pool = self._executor()
            starts = range(0, len(raws), size)
            futures: list[Future[list[NewMessage | NotifierError]]] = [
                pool.submit(
                    _prepare_chunk,
                    list(raws[i : i + size]),
                    list(locs[i : i + size]),
                    self.inline.pipeline.dns_observed,  # the brands' DNS state, as seen here
                )
                for i in starts
            ]
            out: list[NewMessage | NotifierError] = []
            for i, future in zip(starts, futures, strict=True):
                out.extend(self._chunk_result(future, raws[i : i + size], locs[i : i + size]))
            return out
        except BrokenProcessPool as exc:
            log.warning("intake worker process failed (%s); preparing in-process", exc)
            self._discard(pool)
            return self.inline.prepare(raws, locs)

    def _chunk_result(
        self,
        future: Future[list[NewMessage | NotifierError]],
        raws: Sequence[Any],
        locs: Sequence[str],
    ) -> list[NewMessage | NotifierError]:
        """A chunk's results; if the chunk itself failed other than by a broken pool (its
        items or results would not pickle), it is prepared in-process, item by item, so
        that whatever went wrong is one item's error, not the chunk's."""
        try:
            return future.result()
        except BrokenProcessPool:
            raise
        except Exception as exc:
            log.error("intake worker task failed; preparing its items in-process", exc_info=exc)
            return self.inline.prepare(raws, locs)

    def _discard(self, pool: ProcessPoolExecutor | None) -> None:
        # a pool that keeps failing (workers that cannot start) must not cost a spawn
        # per batch: pause before the next attempt
        self._retry_at = time.monotonic() + RETRY_SECONDS
        with self._lock:
            if pool is not None and self._pool is pool:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (like the outbox's connections, they start again on use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --- in the worker processes ---------------------------------------------------------

_WORKER: InlinePreparer | None = None


def _init_worker(settings: Settings, warm_up: bool) -> None:
    global _WORKER
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when
    # the pool stops (it shuts it down), the workers should not die mid-task first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    follow_parent(os.getppid(), _exit)  # no orphans after a kill -9 of the server
    pipeline = Pipeline(settings)
    if warm_up:
        pipeline.warm_up()
    _WORKER = InlinePreparer(pipeline)
    heap.settle()  # start-up's objects out of the collector's full passes


def _exit() -> None:
    # the resource tracker then sees its last client go and exits as well
    os._exit(1)


def _ping() -> int:
    return os.getpid()


def _prepare_chunk(
    raws: list[Any], locs: list[str], dns: Mapping[str, bool] | None = None
) -> list[NewMessage | NotifierError]:
    assert _WORKER is not None, "intake worker not initialised"
    if dns is not None:
        _WORKER.pipeline.observe_dns(dns)
    return _WORKER.prepare(raws, locs)


__all__ = ["InlinePreparer", "PoolPreparer", "Preparer", "auto_processes"]
