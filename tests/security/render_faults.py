"""Fault injection for the template workers (imported by them, by reference through
pickle): renders that a guard failed to stop, simulated by work in C that holds the
GIL and never checks a budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from notifier.compose.render import engine


def backtrack() -> None:
    """Catastrophic regex backtracking: one C call that does not return in time."""
    re.fullmatch(r"(a+)+b", "a" * 64)


def spinning_render_job(job: engine.Job) -> dict[str, str]:
    """:func:`engine.render_job`, except that a brand override of ``domain.renewed``
    spins (after leaving a mark next to the brand's templates, so a test knows)."""
    if job.event.name == "domain.renewed" and len(job.search_path) > 1:
        (job.search_path[0].parent / "spinning").touch()
        backtrack()
    return engine.render_job(job)


def allocate(size: int) -> int:
    return len(bytearray(size))


def pid() -> int:
    import os

    return os.getpid()


def limits() -> dict[str, Any]:
    """The worker's own view of its kernel limits."""
    import resource

    return {
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "cpu": resource.getrlimit(resource.RLIMIT_CPU),
    }


def marker(path: str) -> str:
    return Path(path).read_text()
