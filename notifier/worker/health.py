"""Whether the outbox answers, as one worker sees it, and how long to wait before asking again.

During a database outage every loop of a worker (claimer, recorder, heartbeat) fails on
each try. Logging each failure buried the one line that matters under an ERROR every
0.2 s per worker; so the worker logs the *changes*: one ERROR when the database stops
answering, one WARNING with the outage's length when it answers again, the failures in
between at DEBUG. Each loop retries after a :class:`Backoff` (doubling up to a cap), so
a long outage costs a few queries a minute rather than five a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("notifier.worker")


class Backoff:
    """Waits that double from ``first`` up to ``cap``; :meth:`reset` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = max(cap, first)
        self._next = first

    def next(self) -> float:
        """The wait before the next try (and doubles the one after it)."""
        wait = self._next
        self._next = min(self.cap, self._next * 2)
        return wait

    def reset(self) -> None:
        self._next = self.first


class DatabaseHealth:
    """The outbox's state for one worker: up, or down since when (shared by its
    database thread and its recorder thread, hence the lock).

    Each kind of call (``claim``, ``recording outcomes``, …) is down from its first
    failure until it succeeds again, and the outage lasts while any kind is down: so
    when only recording fails, the claims that still succeed do not log a recovery, and
    the next failed recording another outage, every few seconds.
    """

    def __init__(self, worker: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.clock = clock
        self.down_since: float | None = None
        self.failures = 0
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed: an ERROR the first time, DEBUG while the outage lasts."""
        with self._lock:
            self.failures += 1
            self._failing.add(what)
            first = self.down_since is None
            if first:
                self.down_since = self.clock()
        if first:
            log.error(
                "worker %s: database unavailable: %s (%s failed; retrying with backoff)",
                self.worker,
                exc,
                what,
            )
        else:
            log.debug("worker %s: %s failed again: %s", self.worker, what, exc)

    def ok(self, what: str | None = None) -> None:
        """A call of kind ``what`` succeeded (None: every kind works again): one WARNING
        when that ends the outage."""
        with self._lock:
            if self.down_since is None:
                return
            if what is None:
                self._failing.clear()
            else:
                self._failing.discard(what)
            if self._failing:
                return
            seconds, failures = self.clock() - self.down_since, self.failures
            self.down_since = None
            self.failures = 0
        log.warning(
            "worker %s: database available again after %.1f s (%d failed call(s))",
            self.worker,
            seconds,
            failures,
        )
