"""One claimed message through the send steps: lifetime, suppression, signer, sign, deliver.

Guard clauses in the manner of Postal's outgoing message processor: each step either
decides the message's fate and stops, or hands on to the next. The worker
(:mod:`notifier.worker.loop`) runs many jobs at once and records what they decide.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..delivery.policy import Decision, decide, expired
from ..delivery.transport import AttemptResult, Envelope, Transport
from ..errors import NotifierError
from ..feedback.verp import verp_for
from ..outbox import Claim, Delivery, Outbox, Status
from ..signing.identity import dkim_identity

if TYPE_CHECKING:
    from ..brands import Brand, BrandRegistry
    from ..dns.verify import DnsView
    from ..signing.dkim import Signer

__all__ = ["Job", "JobContext"]

log = logging.getLogger("notifier.worker")


class JobContext(Protocol):
    """What a job needs from the worker that runs it."""

    @property
    def outbox(self) -> Outbox: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def signer(self) -> Signer: ...

    @property
    def brands(self) -> BrandRegistry: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def dns(self) -> DnsView: ...

    async def ready_to_send(self) -> None:
        """Awaited with a connection in hand, before the transaction (Envelope.ready)."""
        ...


class Job:
    """One claimed message through the send steps.

    Each step is a guard clause: it returns a :class:`Delivery` when the message's fate
    is decided (and the remaining steps are skipped), or ``None`` to go on.
    """

    def __init__(self, worker: JobContext, claim: Claim) -> None:
        self.worker = worker
        self.claim = claim
        self.now = worker.clock()
        self.brand: Brand | None = None
        self.signed: bytes = b""
        self.head: bytes | None = None
        self.full: bytes | None = None
        self.sha256: str | None = None
        self.dkim: tuple[str | None, str | None] = (None, None)
        #: signed with the platform's key in place of the brand's (not aligned with From)
        self.fallback = False

    async def run(self) -> Delivery:
        steps: Sequence[Callable[[], Awaitable[Delivery | None]]] = (
            self.check_lifetime,
            self.check_suppression,
            self.find_signer,
            self.sign,
            self.deliver,
        )
        try:
            for step in steps:
                delivery = await step()
                if delivery is not None:
                    return delivery
            raise AssertionError("the deliver step always decides")
        except Exception as exc:  # the catch-all: one bad message never stops the queue
            log.exception("message %s: unexpected error", self.claim.id)
            return self.attempted(
                AttemptResult("transient", text=f"internal error: {type(exc).__name__}: {exc}")
            )

    # --- outcomes ------------------------------------------------------------------

    def finish(self, decision: Decision, attempt: AttemptResult | None = None) -> Delivery:
        c = self.claim
        return Delivery(
            id=c.id,
            status=decision.status,
            reason=decision.reason,
            next_attempt_at=decision.next_attempt_at,
            attempt=attempt,
            signed_head=self.head,
            signed_full=self.full,
            sent_sha256=self.sha256,
            dkim_domain=self.dkim[0],
            dkim_selector=self.dkim[1],
            suppress=decision.suppress,
            rcpt_to=c.rcpt_to,
            brand=c.brand,
            at=self.worker.clock(),  # just after the attempt: the relay's 250 for sent mail
        )

    def attempted(self, result: AttemptResult) -> Delivery:
        """Classify an attempt (or a failure to attempt) with the retry schedule."""
        w = self.worker
        decision = decide(w.outbox.config, self.claim, result, w.clock(), w.rng)
        return self.finish(decision, result)

    # --- the steps ---------------------------------------------------------------------

    async def check_lifetime(self) -> Delivery | None:
        """Stale: more than ``expiry_grace`` past its deadline (the final attempt is
        scheduled at the deadline, so this is a message a worker reaches too late, e.g.
        after an outage): failed with 4.4.7 and not sent. A message that fails a
        transient attempt at or after its deadline fails the same way (see ``decide``)."""
        grace = self.worker.outbox.config.expiry_grace
        if self.now > self.claim.deadline + grace:
            return self.finish(expired(self.claim, self.now))
        return None

    async def check_suppression(self) -> Delivery | None:
        """Optional mail to an address that bounced as unknown is not sent; mandatory
        notices are (a registrar must attempt them)."""
        if self.claim.suppressed and not self.claim.mandatory:
            return self.finish(
                Decision(Status.SUPPRESSED, "recipient is on the brand's suppression list")
            )
        return None

    async def find_signer(self) -> Delivery | None:
        """The brand the message was composed to be signed by, unless the stored DNS
        checks now say that brand does not sign as itself (its record gone or changed
        after composing): then the platform's key signs, as Postal's ``dkim_header.rb``
        falls back, so the message still carries a signature that verifies."""
        try:
            brand = self.worker.brands.get(self.claim.sign_brand)
        except NotifierError as exc:
            return self.attempted(AttemptResult("transient", text=f"cannot sign: {exc}"))
        platform = self.worker.brands.platform
        if brand.id != platform.id and self.worker.dns.verified(brand.id) is False:
            log.info(
                "message %s: brand %s DNS not verified now; signed with the platform key",
                self.claim.id,
                brand.id,
            )
            brand, self.fallback = platform, True
        self.brand = brand
        return None

    async def sign(self) -> Delivery | None:
        """DKIM-sign now with the brand's active key. A missing key is a configuration
        problem: the message waits (deferred, reason recorded) until it is fixed or the
        message's lifetime ends; the rest of the queue flows."""
        assert self.brand is not None
        data = self.claim.data
        try:
            if self.fallback:  # d=platform cannot align with the brand's From: on purpose
                signed = self.worker.signer.sign(data, self.brand, check_alignment=False)
            else:
                signed = self.worker.signer.sign(data, self.brand)
        except NotifierError as exc:
            log.error("message %s: signing failed: %s", self.claim.id, exc)
            return self.attempted(AttemptResult("transient", text=f"signing failed: {exc}"))
        self.signed = signed
        if signed.endswith(data):
            self.head = signed[: len(signed) - len(data)]
        else:  # the signer normalised the body: keep the whole message
            self.full = signed
            self.head = None
        self.sha256 = hashlib.sha256(signed).hexdigest()
        self.dkim = dkim_identity(self.head if self.head is not None else signed)
        return None

    def envelope_sender(self) -> str:
        """The message's own VERP Return-Path on its signer's bounce domain: the row id
        exists only once stored, so the address is made here, at send time."""
        verp = verp_for(self.worker.signer.keystore.directory)
        return verp.envelope_sender(self.claim.id, self.claim.mail_from)

    async def deliver(self) -> Delivery:
        c = self.claim
        envelope = Envelope(
            c.message_id,
            self.envelope_sender(),
            c.rcpt_to,
            self.signed,
            ready=self.worker.ready_to_send,
        )
        try:
            result = await self.worker.transport.send(envelope)
        except Exception as exc:  # a transport must not raise; if it does, retry later
            log.exception("message %s: transport raised", c.id)
            result = AttemptResult("transient", text=f"transport error: {type(exc).__name__}")
        if result.possible_duplicate:
            log.warning(
                "message %s %s: possible duplicate (connection lost after the final dot); "
                "a retry carries the same Message-ID",
                c.id,
                c.message_id,
            )
        return self.attempted(result)
