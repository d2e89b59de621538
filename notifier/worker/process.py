"""``notifier serve``'s delivery workers, each in a process of its own, supervised.

One interpreter cannot both answer 300 requests a second and deliver 300 messages a
second: the API and a worker sharing it need more than one core between them, and
every outcome's commit waits for the GIL the request handlers hold. At 300 single
events a second on two cores, the in-process worker fell behind by seconds
(``bench/latency.py``: p50 0.5–3.6 s), while the same API with one worker process
beside it delivered each message in 12–16 ms (p50; p99 126 ms). So ``serve`` starts
its workers as child processes (``--worker-processes N``, default 1; ``0`` keeps the
worker in the server's own process, for one core or one process to debug).

A child is the same :func:`notifier.worker.loop.serve` that ``notifier worker`` runs,
with the server's settings, and it is woken by the server's intake through the
cross-process channels (``NOTIFY`` on PostgreSQL, a FIFO on SQLite). The supervisor:

* restarts a child that exits while the server runs (a crash, ``kill -9``, out of
  memory), after 1 s, doubling to at most 30 s while they keep failing; a killed
  child's claimed messages come back when their lease expires, as for any worker;
* on shutdown sends each child SIGTERM (it stops claiming, finishes its sends in flight
  and releases the rest), waits for them, and kills what is left after ``grace``;
* does not leave children behind a server killed with ``kill -9``: a child asks the
  kernel for SIGTERM when its parent dies (Linux) and polls for it as well, and stops
  as on a SIGTERM.

Ctrl-C in a terminal reaches the whole process group; the children ignore SIGINT and
stop when the server tells them, so that no child stops before the API does.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from ..parent import follow_parent

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("notifier.worker")

__all__ = ["WorkerProcesses"]

#: a child that ran this long before it exited is restarted after the first delay again
HEALTHY_SECONDS = 60.0
#: how often the supervisor looks at its children
WATCH_SECONDS = 0.2


@dataclass
class _Slot:
    """One child's place: the process in it, and when to start the next after a failure."""

    proc: BaseProcess | None = None
    started: float = 0.0
    delay: float = 1.0
    restart_at: float = 0.0


class WorkerProcesses:
    """``count`` worker processes with the server's settings, kept running until ``stop``."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        *,
        log_level: int = logging.INFO,
        grace: float = 60.0,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.settings = settings
        self.log_level = log_level
        self.grace = grace
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.slots = [_Slot(delay=first_delay) for _ in range(count)]
        self._ctx = multiprocessing.get_context("spawn")

    def pids(self) -> list[int]:
        """The running children's process ids."""
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.pid is not None]

    async def run(self, stop: asyncio.Event) -> None:
        """Start the children, restart those that exit, and stop them all once ``stop``
        is set (also if this task is cancelled)."""
        try:
            while not stop.is_set():
                now = time.monotonic()
                for slot in self.slots:
                    self._tend(slot, now)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=WATCH_SECONDS)
                except TimeoutError:
                    pass
        finally:
            await asyncio.shield(asyncio.to_thread(self.terminate))

    def _tend(self, slot: _Slot, now: float) -> None:
        proc = slot.proc
        if proc is not None:
            if proc.exitcode is None:
                return
            ran = now - slot.started
            if ran >= HEALTHY_SECONDS:  # it ran well: no failure streak to back off from
                slot.delay = self.first_delay
            log.error(
                "worker process %s exited (%s) after %.1f s; starting another in %.3g s",
                proc.pid,
                _describe(proc.exitcode),
                ran,
                slot.delay,
            )
            proc.close()
            slot.proc = None
            self._back_off(slot, now)
        if now < slot.restart_at:
            return
        try:
            slot.proc = self._start()
        except Exception:  # cannot spawn (no memory, no processes): try again later
            log.exception("could not start a worker process")
            self._back_off(slot, now)
            return
        slot.started = now
        log.info("worker process %s started", slot.proc.pid)

    def _back_off(self, slot: _Slot, now: float) -> None:
        """The next start after the slot's delay, which doubles up to ``max_delay``."""
        slot.restart_at = now + slot.delay
        slot.delay = min(self.max_delay, slot.delay * 2)

    def _start(self) -> BaseProcess:
        proc = self._ctx.Process(
            target=_child_main,
            args=(self.settings, os.getpid(), self.log_level),
            name="notifier-worker",
            daemon=False,
        )
        proc.start()
        return proc

    def terminate(self) -> None:
        """SIGTERM every child, wait up to ``grace`` for all, then SIGKILL the rest."""
        running = [s.proc for s in self.slots if s.proc is not None and s.proc.exitcode is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + self.grace
        for proc in running:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                log.error("worker process %s still busy after %s s: killed", proc.pid, self.grace)
                proc.kill()
                proc.join()
        for slot in self.slots:
            if slot.proc is not None:
                slot.proc.close()
                slot.proc = None


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# --- in the child ----------------------------------------------------------------------


def _child_main(settings: Settings, parent: int, log_level: int) -> None:
    """Run one worker until SIGTERM (from the server, or the kernel when it died)."""
    from .loop import serve

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server says when to stop
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def main() -> None:
        follow_parent(parent, _stop)  # SIGTERM when the server is gone
        await serve(settings, signals=(signal.SIGTERM,))  # it logs its summary

    asyncio.run(main())


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the worker stops as on the server's SIGTERM
