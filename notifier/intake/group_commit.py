"""Group commit: many concurrent single events, one durable commit.

Each request for one event waits here while a task accepts whatever is waiting as one
list; under load that is one fsync for many requests, and when idle it adds no latency
(no timer). Used by the API's single-event path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..errors import NotifierError

log = logging.getLogger("notifier.intake")

T = TypeVar("T")


class _Raised:
    """An event whose accept raised (an outcome of the accept is any ``T``, errors too)."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


#: most single events one group commit takes
GROUP_MAX = 256
#: groups in progress at once: while one commits, the next is rendered
GROUP_TASKS = 2


class GroupCommit(Generic[T]):
    """Single events queue here; a task accepts whatever is waiting as one batch
    (through ``accept_each``, so one bad event fails alone). While
    a group is accepted, the next gathers: no timer, no added latency when idle, and one
    fsync for many requests under load. Two such tasks take turns, so that rendering a
    group (the long part, on every core for a large one) overlaps the previous group's
    commit. A storage failure fails the whole group, and nothing of it was accepted; any
    other exception (a bug) is narrowed down to the events that raise it."""

    def __init__(
        self,
        accept_each: Callable[[list[Any]], Awaitable[list[T]]],
        max_group: Callable[[], int] = lambda: GROUP_MAX,
    ) -> None:
        self.accept_each = accept_each
        self.max_group = max_group
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future[T]]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, raw: Any) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # first use, or the app moved to another loop
            self.loop = loop
            self.queue = asyncio.Queue()
            self.tasks = []
        self.tasks = [t for t in self.tasks if not t.done()]
        while len(self.tasks) < GROUP_TASKS:
            self.tasks.append(asyncio.create_task(self._run()))
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self.queue.put((raw, future))
        return await future

    async def _run(self) -> None:
        while True:
            group = [await self.queue.get()]
            most = max(1, min(GROUP_MAX, self.max_group()))
            while len(group) < most and not self.queue.empty():
                group.append(self.queue.get_nowait())
            live = [(raw, f) for raw, f in group if not f.cancelled()]
            if not live:
                continue
            outcomes: list[T | _Raised]
            try:
                outcomes = list(await self.accept_each([r for r, _ in live]))
            except NotifierError as exc:  # storage failed: nothing of the group was stored
                outcomes = [_Raised(exc)] * len(live)
            except Exception as exc:
                outcomes = await self._each_alone(live, exc)
            for (_, future), outcome in zip(live, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, _Raised):
                    future.set_exception(outcome.exc)
                else:
                    future.set_result(outcome)

    async def _each_alone(
        self, live: list[tuple[Any, asyncio.Future[T]]], exc: Exception
    ) -> list[T | _Raised]:
        """A bug (not a storage failure) failed the group's accept, which stored nothing:
        accept each event alone, so that the bug fails only the event that causes it."""
        if len(live) == 1:
            return [_Raised(exc)]
        log.error("a group of %d events failed; accepting each alone", len(live), exc_info=exc)
        out: list[T | _Raised] = []
        for raw, _ in live:
            try:
                out.extend(await self.accept_each([raw]))
            except Exception as alone:
                out.append(_Raised(alone))
        return out

    async def close(self) -> None:
        if self.loop is asyncio.get_running_loop():
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.tasks = []


__all__ = ["GROUP_MAX", "GROUP_TASKS", "GroupCommit"]
