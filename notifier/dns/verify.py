"""DNS verification that runs itself: check a brand, record what was observed, and let
every process learn the outcome without a restart.

:class:`Verifier` runs :func:`~notifier.dns.checks.check_brand` and records the result
in the outbox (:mod:`notifier.outbox.brand_dns`, which applies the state machine);
workers call :meth:`Verifier.run_due` periodically, ``notifier dns check --apply`` and
``POST /v1/brands/{id}/dns-check`` call :meth:`Verifier.check_and_record` at once.

:class:`DnsView` is one process's copy of the observed states. It reads a version
number (one row) at most every ``refresh`` seconds and the states only when the version
moved, so the API, its intake processes (which get the copy with each task) and the
workers all follow a change within seconds. The copy says, per checked brand, whether
it signs as itself; a brand never checked is absent and its file's ``dns_verified``
applies.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import DNSCheckError, StorageError
from ..outbox.brand_dns import DnsRecorded, Outcome, State, signs_as_itself
from .checks import Check, check_brand

if TYPE_CHECKING:
    from ..brands import Brand, BrandRegistry
    from ..config import Settings
    from ..outbox import Outbox
    from ..signing.keys import KeyStore

log = logging.getLogger("notifier.dns")

#: how long a worker holds a brand it is checking before another may take it (a check
#: takes at most a few lookups' timeouts)
CHECK_LEASE = 300.0
#: ± fraction of jitter on the recheck period, so brands added together spread out
JITTER = 0.1


def outcome_of(checks: Iterable[Check]) -> Outcome:
    """``fail`` when a required record is definitely wrong, ``ok`` when every required
    record is ok, else ``unknown`` (DNS did not answer: never counts as a failure)."""
    required = [c for c in checks if c.required]
    if any(c.status == "fail" for c in required):
        return "fail"
    if all(c.status == "ok" for c in required):
        return "ok"
    return "unknown"


def initial_state(brand: Brand) -> State:
    """The state before any check: the brand file's ``dns_verified`` (an ops statement
    that the records are published), else unverified."""
    return "verified" if brand.dns_verified or brand.platform else "unverified"


class Verifier:
    """Checks brands' DNS and records the outcome (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        brands: BrandRegistry,
        outbox: Outbox,
        *,
        keystore: KeyStore | None = None,
        nameserver: str | None = None,
        timeout: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        from ..signing.keys import KeyStore

        self.settings = settings
        self.brands = brands
        self.outbox = outbox
        self.keystore = keystore or KeyStore(settings.keys_path)
        self.nameserver = nameserver or settings.dns_nameserver
        self.timeout = timeout or settings.dns_timeout
        self.recheck = settings.dns_recheck
        self.rng = rng or random.Random()

    def next_check_in(self) -> float:
        """The recheck period with ±10 % jitter."""
        return self.recheck * self.rng.uniform(1 - JITTER, 1 + JITTER)

    def check(self, brand: Brand) -> list[Check]:
        """The DNS checks of ``brand`` (blocking; bounded by the timeout per lookup)."""
        return check_brand(
            brand, self.settings, self.keystore, nameserver=self.nameserver, timeout=self.timeout
        )

    def record(
        self, brand: Brand, checks: list[Check], *, source: str, owner: str | None = None
    ) -> DnsRecorded:
        outcome = outcome_of(checks)
        recorded = self.outbox.record_dns_check(
            brand.id,
            outcome,
            [c.as_dict() for c in checks],
            initial=initial_state(brand),
            next_check_in=self.next_check_in(),
            source=source,
            owner=owner,
        )
        if recorded.changed:
            log.warning(
                "brand %s DNS: %s → %s (%s)%s",
                brand.id,
                recorded.previous,
                recorded.now.state,
                outcome,
                f"; {recorded.released} held message(s) queued" if recorded.released else "",
            )
        else:
            log.info("brand %s DNS check: %s, state %s", brand.id, outcome, recorded.now.state)
        return recorded

    def check_and_record(
        self, brand: Brand, *, source: str, owner: str | None = None
    ) -> tuple[list[Check], DnsRecorded]:
        checks = self.check(brand)
        return checks, self.record(brand, checks, source=source, owner=owner)

    def checkable(self) -> list[str]:
        """The brands the periodic check looks at: every reseller (the platform always
        sends as itself)."""
        return [b.id for b in self.brands.all() if not b.platform]

    def run_due(self, owner: str, stop: Callable[[], bool] = lambda: False) -> list[DnsRecorded]:
        """Claim the brands due for a check and check them, one after the other; a
        check that cannot run (a bad nameserver setting) gives its brand back, and so
        does ``stop()`` turning true (the worker is shutting down)."""
        done: list[DnsRecorded] = []
        for brand_id in self.outbox.claim_dns_checks(owner, self.checkable(), lease=CHECK_LEASE):
            if stop():
                self._give_back(owner, brand_id)
                continue
            brand = self.brands.get(brand_id)
            try:
                done.append(self.check_and_record(brand, source=f"worker {owner}", owner=owner)[1])
            except (DNSCheckError, StorageError) as exc:
                log.error("brand %s DNS check not recorded: %s", brand_id, exc)
                self._give_back(owner, brand_id)
        return done

    def _give_back(self, owner: str, brand_id: str) -> None:
        """Release a claim at once (else the brand waits for the lease to expire)."""
        try:
            self.outbox.release_dns_claim(owner, brand_id)
        except StorageError as exc:
            log.warning("brand %s DNS claim released when its lease ends: %s", brand_id, exc)


class DnsView:
    """This process's copy of which checked brands sign as themselves.

    ``on_change`` is called with the new copy whenever it changes (the pipeline takes
    it there). Thread-safe; a database that does not answer keeps the old copy.
    """

    def __init__(
        self,
        outbox: Outbox,
        refresh: float = 2.0,
        *,
        on_change: Callable[[Mapping[str, bool]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.refresh_every = refresh
        self.on_change = on_change
        self.clock = clock
        self.observed: Mapping[str, bool] = {}
        self.version = -1
        self._read_at = -1e18
        self._lock = threading.Lock()

    def verified(self, brand_id: str) -> bool | None:
        """True/False as last observed; None for a brand never checked."""
        return self.observed.get(brand_id)

    def stale(self) -> bool:
        """Older than ``refresh`` seconds: :meth:`maybe_refresh` would read."""
        return self.clock() - self._read_at >= self.refresh_every

    def maybe_refresh(self, *, force: bool = False) -> None:
        """:meth:`refresh` if the copy is older than ``refresh`` seconds (or ``force``);
        a database that does not answer keeps the old copy."""
        if force or self.stale():
            try:
                self.refresh()
            except StorageError as exc:
                log.debug("brand DNS states not refreshed: %s", exc)

    def refresh(self) -> bool:
        """Read the version now and, if it moved, the states; True when they changed."""
        with self._lock:
            self._read_at = self.clock()
            if self.outbox.brand_dns_version() == self.version:
                return False
            version, states = self.outbox.brand_dns_states()
            observed = {b: bool(signs_as_itself(s)) for b, s in states.items()}
            changed = observed != self.observed
            self.version, self.observed = version, observed
        if changed and self.on_change is not None:
            self.on_change(observed)
        return changed


__all__ = ["CHECK_LEASE", "DnsView", "Verifier", "initial_state", "outcome_of"]
