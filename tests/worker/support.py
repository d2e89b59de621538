"""Helpers shared by the worker tests: an in-process worker run until idle."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.brands import BrandRegistry
from notifier.config import Settings
from notifier.delivery.relay import RelayTransport
from notifier.delivery.smtp import Timeouts
from notifier.outbox import Outbox
from notifier.signing.dkim import Signer
from notifier.signing.keys import KeyStore
from notifier.worker.loop import Worker, WorkerConfig, WorkerStats

#: the shipped brands (the worker signs with their keys)
BRANDS = BrandRegistry(Settings().brands_dir, Settings().platform_brand)

fault = pytest.mark.smtp_fault
FAST = Timeouts(connect=2.0, command=2.0, data=2.0, data_block=2.0, final=5.0, quit=1.0)
MINUTE = 60.0


def message_id_of(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return str(msg["Message-ID"])


def run_worker(
    box: Outbox,
    key_dir: Path,
    url: str,
    *,
    signer: Signer | None = None,
    config: WorkerConfig | None = None,
    control: Callable[[Worker], Any] | None = None,
) -> WorkerStats:
    """One in-process worker until nothing is due (or ``control`` stops it)."""

    async def go() -> WorkerStats:
        transport = RelayTransport(url, timeouts=FAST, helo="worker.notifier.test")
        worker = Worker(
            box.outbox,
            transport,
            signer or Signer(KeyStore(key_dir)),
            config=config or WorkerConfig(poll_interval=0.01, flush_interval=0.01),
            brands=BRANDS,
        )
        watcher = asyncio.create_task(control(worker)) if control else None
        try:
            return await worker.run(until_idle=control is None)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await transport.close()

    return asyncio.run(go())
