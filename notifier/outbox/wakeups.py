"""Waking the workers when mail becomes due, instead of letting them poll for it.

A transaction that makes a message due (intake, a retry, a release) *announces* it:

* **in this process** (``notifier serve``: the API and its worker share one
  :class:`Outbox`): the callbacks registered with :meth:`Wakeups.on_due` run after
  the commit;
* **PostgreSQL, across processes and machines**: ``NOTIFY notifier_due`` is sent
  inside the transaction, so PostgreSQL delivers it at commit and never for a
  transaction that rolled back; each worker ``LISTEN``s on a dedicated connection;
* **SQLite, across processes**: each worker owns a FIFO next to the database
  (``<dir>/run/<db>.wake.<pid>.<random>``); after the commit the announcing process
  writes one byte to every such FIFO, non-blocking. A FIFO without a reader (its
  worker was killed) answers ``ENXIO`` and is removed; a full one (a stopped worker)
  is skipped — its reader is already due to wake. Announcing never blocks or fails
  the transaction that announced.

Wakes only shorten a wait: a worker still polls every ``poll_interval`` (the fallback,
when a wake is lost), sleeps no longer than until the earliest ``next_attempt_at``
(:meth:`Wakeups.next_due`), and claims only what is due, so deferred mail is never
sent early. A burst of wakes is one claim of a whole batch (the worker coalesces).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from . import sql
from .base import Cursor, StoreBase

log = logging.getLogger("notifier.outbox")

#: the PostgreSQL NOTIFY channel
CHANNEL = "notifier_due"
#: how often a listener thread checks that it should stop (seconds)
TICK = 0.5


class Listener(Protocol):
    """A running wake-up channel; :meth:`close` stops it (idempotent)."""

    def close(self) -> None: ...


class Wakeups(StoreBase):
    """Announcing due mail (writers) and listening for it (workers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: this process's listeners (:meth:`on_due`)
        self._wake_callbacks: list[Callable[[], None]] = []
        #: this process's FIFOs, which its own announcements skip
        self._wake_fifos: set[str] = set()

    # --- announcing ---------------------------------------------------------------------

    def _announce_due(self, cur: Cursor) -> None:
        """Inside the transaction that makes mail due: on PostgreSQL the NOTIFY, which is
        delivered only if and when this transaction commits; after the commit, once per
        transaction, :meth:`_announced_due`."""
        if self.kind == "postgres":
            cur.execute(f"NOTIFY {CHANNEL}")
        if self._announced_due not in cur.after_commit:
            cur.after_commit.append(self._announced_due)

    def _announced_due(self) -> None:
        """After that transaction committed: this process's listeners and, on SQLite,
        the other processes' workers. Never raises."""
        for callback in list(self._wake_callbacks):
            try:
                callback()
            except Exception:  # a listener's bug must not fail the caller's commit
                log.exception("a due-mail callback failed")
        directory = self._fifo_dir()
        if directory is not None:
            _poke_fifos(directory, self._fifo_prefix(), self._wake_fifos)

    def on_due(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread) after each commit in this process that
        makes mail due; returns the function that unregisters it."""
        callbacks = self._wake_callbacks
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def _fifo_dir(self) -> Path | None:
        path = getattr(self, "path", None)
        if self.kind != "sqlite" or path is None or str(path) == ":memory:":
            return None
        return Path(path).parent / "run"

    def _fifo_prefix(self) -> str:
        return f"{Path(getattr(self, 'path', 'db')).name}.wake."

    # --- listening ----------------------------------------------------------------------

    def listen_due(self, callback: Callable[[], None]) -> Listener:
        """Call ``callback`` (on a thread of the listener's) whenever another process
        announces due mail, and once when the channel (re)opens, for what was announced
        while it was closed. This process's own announcements go to :meth:`on_due`."""
        if self.kind == "postgres":
            pg = _PostgresListener(self._connect, callback)
            pg.start()
            return pg
        directory = self._fifo_dir()
        if directory is None:
            return _Nothing()
        fifo = _FifoListener(directory, self._fifo_prefix(), callback, self._wake_fifos)
        fifo.start()
        return fifo

    def next_due(self) -> float | None:
        """The earliest ``next_attempt_at`` of the waiting messages (None: none wait): a
        worker sleeps no longer than that."""
        with self.transaction(write=False) as cur:
            row = cur.execute(
                f"SELECT MIN(next_attempt_at) FROM outbox_messages WHERE status IN ({sql.DUE_LIST})"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])


class _Nothing:
    def close(self) -> None:
        return None


def _poke_fifos(directory: Path, prefix: str, own: set[str]) -> None:
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return  # no worker has ever listened here
    for name in names:
        if name in own:
            continue  # this process's worker hears it through on_due
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it: its worker is gone
                _unlink(path)
            continue
        try:
            os.write(fd, b"!")
        except OSError:
            pass  # full: the worker has wakes pending already
        finally:
            os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class _FifoListener(threading.Thread):
    """One worker's FIFO: created under a temporary name, opened, then renamed into
    place, so a writer never finds it without a reader (and removes it)."""

    def __init__(
        self, directory: Path, prefix: str, callback: Callable[[], None], own: set[str]
    ) -> None:
        super().__init__(name="outbox-wake", daemon=True)
        self.callback = callback
        self.own = own
        self.name_ = f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.path = directory / self.name_
        self._stop_r, self._stop_w = os.pipe()
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f".{self.name_}.tmp"
        os.mkfifo(temp, 0o600)
        # read and write: the FIFO never reads as closed (EOF) between writers
        self.fd = os.open(temp, os.O_RDWR | os.O_NONBLOCK)
        os.rename(temp, self.path)
        own.add(self.name_)

    def run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self.fd, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                try:
                    while os.read(self.fd, 4096):
                        pass
                except BlockingIOError:
                    pass
                try:
                    self.callback()
                except Exception:
                    log.exception("a due-mail callback failed")
        finally:
            os.close(self.fd)
            os.close(self._stop_r)

    def close(self) -> None:
        if self._stop_w < 0:
            return
        self.own.discard(self.name_)
        _unlink(self.path)
        os.write(self._stop_w, b"x")
        os.close(self._stop_w)
        self._stop_w = -1
        self.join(5)


class _PostgresListener(threading.Thread):
    """``LISTEN notifier_due`` on a connection of its own, reopened after a failure
    (with a growing pause); the fallback poll covers the gap."""

    def __init__(self, connect: Callable[[], Any], callback: Callable[[], None]) -> None:
        super().__init__(name="outbox-listen", daemon=True)
        self.connect = connect
        self.callback = callback
        self._halt = threading.Event()
        self.conn: Any = None

    def run(self) -> None:
        pause = TICK
        while not self._halt.is_set():
            try:
                self.conn = conn = self.connect()
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                pause = TICK
                self.callback()  # anything announced while no one listened
                while not self._halt.is_set():
                    for _ in conn.notifies(timeout=TICK):
                        self.callback()
            except Exception as exc:
                if self._halt.is_set():
                    break
                log.debug("listening for due mail failed (polling meanwhile): %s", exc)
                self._halt.wait(pause)
                pause = min(pause * 2, 10.0)
            finally:
                self._close_conn()

    def _close_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the listening connection failed", exc_info=True)

    def close(self) -> None:
        self._halt.set()
        self.join(5 + TICK)
