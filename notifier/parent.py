"""Child processes that end with their parent (``notifier serve``'s intake and worker
processes).

A parent killed with ``kill -9`` cannot stop its children, and they would wait for work
forever: 18 orphans after six kills of ``notifier serve``. Linux's parent-death signal
tells a child at once; a watchdog thread polling ``getppid()`` covers other systems and
the case the signal does not: the kernel sends it when the *thread* that started the
process exits, so the handler acts only once the parent process itself is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["follow_parent"]

#: prctl(2) option: a signal for this process when its parent dies (Linux)
PR_SET_PDEATHSIG = 1
#: how often the watchdog looks for the parent
POLL_SECONDS = 0.5


def follow_parent(parent: int, on_gone: Callable[[], None]) -> None:
    """Call ``on_gone`` once process ``parent`` is gone: from a signal handler (in the
    main thread) or from the watchdog thread, so it should end the process or ask it to
    end (``os._exit``, a SIGTERM to itself), and may be called more than once."""

    def parent_gone() -> bool:
        return os.getppid() != parent

    def on_signal(signum: int, frame: object) -> None:
        if parent_gone():
            on_gone()

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            signal.signal(signal.SIGUSR1, on_signal)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
        except (OSError, AttributeError, ValueError):  # the watchdog still works
            pass

    def watch() -> None:
        while not parent_gone():
            time.sleep(POLL_SECONDS)
        on_gone()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    if parent_gone():  # died before the signal was armed
        on_gone()
