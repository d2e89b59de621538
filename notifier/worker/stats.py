"""What one worker run did (``WorkerStats``), and the lease token naming the worker."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..outbox import Status


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    released: int = 0
    lost_leases: int = 0
    possible_duplicates: int = 0
    started: float = field(default_factory=time.monotonic)

    def count(self, status: Status) -> None:
        name = str(status)
        if hasattr(self, name):
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "released": self.released,
            "lost_leases": self.lost_leases,
            "possible_duplicates": self.possible_duplicates,
            "seconds": round(time.monotonic() - self.started, 3),
        }


def worker_name() -> str:
    """The lease token: host, pid and a random part (unique per worker run)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


__all__ = ["WorkerStats", "worker_name"]
