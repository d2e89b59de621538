"""The webhook dispatcher: runs beside the delivery worker (``notifier worker`` and
``notifier serve``) and delivers the outbox's pending webhook deliveries.

* the **claimer** leases due deliveries (``Outbox.claim_webhooks``) while fewer than
  twice ``concurrency`` are in hand, and polls every ``poll`` seconds when none are due;
* each delivery is one task, admitted by a global semaphore (``concurrency`` attempts in
  flight) and one per endpoint (``per_endpoint``), so one slow receiver cannot take
  every slot;
* the **recorder** commits finished attempts in groups (one transaction for all that
  finished meanwhile), and the **heartbeat** extends the leases in hand.

A worker killed with ``kill -9`` leaves its deliveries leased; when the lease expires
another worker claims them and sends them again with the same ``webhook-id``
(at-least-once: receivers dedupe on it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StorageError
from ..outbox.webhook_model import WebhookJob, WebhookResult
from .http import Sender
from .signing import SecretError, WebhookSecret, unseal

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Settings
    from ..outbox import Outbox

log = logging.getLogger("notifier.webhooks")
T = TypeVar("T")


@dataclass(frozen=True)
class DispatchConfig:
    #: attempts in flight at once (per worker process)
    concurrency: int = 64
    #: attempts in flight to one endpoint at once (per worker process)
    per_endpoint: int = 16
    #: deliveries leased per claim at most
    batch: int = 200
    #: seconds between claims when nothing is due
    poll: float = 1.0
    #: one attempt's time limit (connect, send, answer)
    timeout: float = 15.0
    #: how long a claim holds without a heartbeat
    lease: float = 120.0
    allow_private: bool = False


@dataclass
class DispatchStats:
    delivered: int = 0
    retried: int = 0
    gone: int = 0
    lost_leases: int = 0
    released: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "webhooks_delivered": self.delivered,
            "webhooks_retried": self.retried,
            "webhooks_gone": self.gone,
        }


def config_from_settings(settings: Settings) -> DispatchConfig:
    return DispatchConfig(
        concurrency=settings.webhook_concurrency,
        per_endpoint=settings.webhook_endpoint_concurrency,
        poll=settings.worker_poll,
        timeout=settings.webhook_timeout,
        lease=settings.lease,
        allow_private=settings.webhook_allow_private,
    )


def dispatcher_from_settings(settings: Settings, outbox: Outbox) -> Dispatcher:
    return Dispatcher(outbox, settings.secret(), config_from_settings(settings))


class Dispatcher:
    """Delivers pending webhooks from ``outbox``; ``master`` opens the sealed secrets."""

    def __init__(
        self,
        outbox: Outbox,
        master: bytes,
        config: DispatchConfig | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.master = master
        self.config = config or DispatchConfig()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:wh-{uuid.uuid4().hex[:10]}"
        self.sender = Sender(
            allow_private=self.config.allow_private,
            timeout=self.config.timeout,
            connections=self.config.concurrency,
            clock=outbox.clock,
        )
        self.stats = DispatchStats()
        self._secrets: dict[str, WebhookSecret] = {}
        self._db: ThreadPoolExecutor | None = None
        self._stopping = asyncio.Event()
        self._idle_exit = False
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[WebhookResult] = []
        self._in_hand: set[int] = set()
        self._unstarted: list[int] = []
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._per_endpoint: dict[int, asyncio.Semaphore] = {}

    def __repr__(self) -> str:
        return f"Dispatcher({self.name!r}, {self.outbox!r})"

    # --- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; attempts in flight finish and are recorded, the rest released."""
        self._stopping.set()
        self._wake.set()

    def finish_when_idle(self) -> None:
        """Return from :meth:`run` once nothing is due (``notifier worker --until-idle``)."""
        self._idle_exit = True
        self._wake.set()

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, partial(fn, *args))

    # --- the loop ----------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> DispatchStats:
        self._idle_exit = self._idle_exit or until_idle
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhooks-db")
        recorder = asyncio.create_task(self._recorder())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._claimer()
        finally:
            self._stopping.set()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._flush.set()
            recorder_done = await asyncio.gather(recorder, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._release()
            await self.sender.close()
            self._db.shutdown(wait=True)
            self._db = None
            if recorder_done and isinstance(recorder_done[0], BaseException):
                log.error("webhook recorder stopped: %s", recorder_done[0])
        return self.stats

    async def _claimer(self) -> None:
        cfg = self.config
        wait = cfg.poll
        while not self._stopping.is_set():
            room = 2 * cfg.concurrency - len(self._in_hand)
            if room > 0:
                try:
                    jobs = await self._db_call(
                        self.outbox.claim_webhooks, self.name, min(cfg.batch, room), cfg.lease
                    )
                except StorageError as exc:
                    log.warning("webhooks: claim failed (%s); retrying in %.1f s", exc, wait)
                    await self._sleep(wait, wake=False)
                    wait = min(wait * 2, 30.0)
                    continue
                wait = cfg.poll
                for job in jobs:
                    self._in_hand.add(job.id)
                    task = asyncio.create_task(self._attempt(job))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if jobs:
                    continue
                if self._idle_exit and not self._in_hand:
                    return
            await self._sleep(cfg.poll)

    async def _sleep(self, seconds: float, *, wake: bool = True) -> None:
        self._wake.clear()
        if self._stopping.is_set():
            return
        event = self._wake if wake else self._stopping
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass

    def _open(self, sealed: str) -> WebhookSecret:
        secret = self._secrets.get(sealed)
        if secret is None:
            secret = self._secrets[sealed] = unseal(self.master, sealed)
        return secret

    async def _attempt(self, job: WebhookJob) -> None:
        endpoint = self._per_endpoint.setdefault(
            job.endpoint, asyncio.Semaphore(self.config.per_endpoint)
        )
        async with endpoint, self._slots:
            if self._stopping.is_set():
                self._unstarted.append(job.id)
                return
            try:
                secrets = [self._open(s) for s in job.secrets]
            except SecretError as exc:
                result = WebhookResult(job, "retry", self.outbox.clock(), 0.0, None, str(exc))
            else:
                result = await self.sender.send(job, secrets)
        self._results.append(result)
        self._flush.set()

    async def _recorder(self) -> None:
        """Commit finished attempts, as many per transaction as finished meanwhile."""
        wait = self.config.poll
        failures_stopping = 0
        while True:
            final = self._stopping.is_set() and not self._tasks
            if not final:
                await self._flush.wait()
            self._flush.clear()
            batch, self._results = self._results, []
            if not batch:
                if final:
                    return
                continue
            try:
                lost = await self._db_call(self.outbox.complete_webhooks, self.name, batch)
            except StorageError as exc:
                log.warning("webhooks: recording %d attempt(s) failed: %s", len(batch), exc)
                failures_stopping += final
                if failures_stopping >= 3:  # stopping: the leases expire, they are sent again
                    log.error("webhooks: %d attempt(s) not recorded", len(batch))
                    return
                self._results[:0] = batch
                await asyncio.sleep(wait)
                wait = min(wait * 2, 30.0)
                self._flush.set()
                continue
            wait = self.config.poll
            self._recorded(batch, lost)

    def _recorded(self, batch: list[WebhookResult], lost: list[int]) -> None:
        for r in batch:
            self._in_hand.discard(r.job.id)
            if r.outcome == "delivered":
                self.stats.delivered += 1
            elif r.outcome == "gone":
                self.stats.gone += 1
            else:
                self.stats.retried += 1
                log.info(
                    "webhook %s to endpoint %s failed: %s",
                    r.job.webhook_id,
                    r.job.endpoint,
                    r.error,
                )
        self.stats.lost_leases += len(lost)
        self._wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease / 3)
            if self._in_hand:
                try:
                    await self._db_call(
                        self.outbox.heartbeat_webhooks, self.name, self.config.lease
                    )
                except StorageError as exc:
                    log.warning("webhooks: heartbeat failed: %s", exc)

    async def _release(self) -> None:
        ids, self._unstarted = self._unstarted, []
        if not ids:
            return
        try:
            self.stats.released += await self._db_call(self.outbox.release_webhooks, self.name, ids)
        except StorageError as exc:
            log.error(
                "webhooks: releasing %d delivery(ies) failed (their lease expires): %s",
                len(ids),
                exc,
            )
        for i in ids:
            self._in_hand.discard(i)
