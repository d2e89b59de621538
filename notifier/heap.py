"""Short full garbage-collector passes in the long-running processes.

A full (generation 2) collection walks every container object the process holds. In
``notifier serve``, its intake processes and the workers most of those were made at
start-up and live for good: FastAPI's routes and pydantic's models, Jinja's compiled
templates, Babel's locale data, the public suffix list. Measured at 300 events/s on
two cores, a full pass held the API process's interpreter for 50–90 ms and a worker's
for 20–70 ms, a few times a run, and every message in flight in that process waited.

:func:`settle`, called once a process has warmed up, collects what start-up left
behind and moves the rest out of the collector's sight (``gc.freeze``): later full
passes walk only what was made since. Frozen objects are never freed, which is what
start-up's objects are for anyway.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("notifier")


def settle() -> int:
    """Collect, then freeze what is left; returns how many objects are now frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("start-up heap frozen: %d objects out of the collector's full passes", frozen)
    return frozen
