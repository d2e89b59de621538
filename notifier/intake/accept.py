"""Accepting events: prepare them (validate and compose, here or on every core), then
store the prepared messages in one outbox transaction.

The outbox only stores what it is given; this is the one place that joins the compose
sequence to it, for the API and for anything else that accepts raw events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..compose.pipeline import Pipeline
from ..config import Settings
from ..errors import FieldError, InternalError, NotifierError, ValidationError
from ..outbox import Accepted, NewMessage, Outbox
from .preparer import InlinePreparer, PoolPreparer, Preparer

log = logging.getLogger("notifier.intake")


def make_preparer(settings: Settings, pipeline: Pipeline, processes: int) -> Preparer:
    """In-process for ``processes == 0``, else a pool of that many worker processes
    (each builds its own pipeline from ``settings``) with in-process as its fallback."""
    inline = InlinePreparer(pipeline)
    if processes < 1:
        return inline
    return PoolPreparer(settings, processes, inline)


class Intake:
    """Raw events → stored messages. ``max_batch`` bounds a list."""

    def __init__(self, outbox: Outbox, preparer: Preparer, *, max_batch: int = 1000) -> None:
        self.outbox = outbox
        self.preparer = preparer
        self.max_batch = max_batch

    def accept(self, raw: Any) -> Accepted:
        """Validate, compose and store one event; its id (or the existing one's)."""
        return self._accepted(self._accept([raw], [""]))[0]

    def accept_batch(self, raws: Any, prefix: str = "events") -> list[Accepted]:
        """Accept several events atomically: any invalid event (errors name
        ``events[3].data.expires_at``), render error or idempotency conflict rejects the
        whole batch and stores nothing."""
        return self._accepted(self._accept(*self._items(raws, prefix)))

    def accept_each(self, raws: Any, prefix: str = "events") -> list[Accepted | NotifierError]:
        """Accept several events, each on its own merits: the valid ones are stored in one
        transaction; an invalid item, a render error or an idempotency conflict is that
        item's result (errors name ``events[3].data.expires_at``) and stores nothing of
        it. A storage failure raises and stores nothing at all."""
        return self._accept(*self._items(raws, prefix), atomic=False)

    def close(self) -> None:
        self.preparer.close()

    def _items(self, raws: Any, prefix: str) -> tuple[list[Any], list[str]]:
        if not isinstance(raws, Sequence) or isinstance(raws, str | bytes):
            raise ValidationError([FieldError(prefix or "body", "must be a list of events")])
        if len(raws) > self.max_batch:
            raise ValidationError(
                [FieldError(prefix or "body", f"at most {self.max_batch} events per batch")]
            )
        return list(raws), [f"{prefix}[{i}]" for i in range(len(raws))]

    @staticmethod
    def _accepted(results: list[Accepted | NotifierError]) -> list[Accepted]:
        # atomic: any error was raised before anything was stored
        return [r for r in results if isinstance(r, Accepted)]

    def _accept(
        self, raws: list[Any], locs: list[str], atomic: bool = True
    ) -> list[Accepted | NotifierError]:
        outcomes = self.preparer.prepare(raws, locs)
        if atomic:
            invalid = [e for o in outcomes if isinstance(o, ValidationError) for e in o.errors]
            if invalid:
                raise ValidationError(invalid)
            for outcome in outcomes:
                if isinstance(outcome, NotifierError):
                    raise outcome
        ready = [o for o in outcomes if isinstance(o, NewMessage)]
        stored = iter(self._store(ready, atomic))
        return [next(stored) if isinstance(o, NewMessage) else o for o in outcomes]

    def _store(self, ready: list[NewMessage], atomic: bool) -> list[Accepted | NotifierError]:
        """Store ``ready`` in one transaction. Not atomic, an unexpected exception (a bug,
        not a storage failure: the transaction rolled back) is narrowed down by storing
        each message alone, so that it fails only the message that raises it."""
        try:
            return self.outbox.store(ready, atomic)
        except NotifierError:
            raise
        except Exception as exc:
            if atomic or len(ready) < 2:
                raise
            log.error("storing %d messages failed; storing each alone", len(ready), exc_info=exc)
        out: list[Accepted | NotifierError] = []
        for message in ready:  # each its own commit: each its own answer, even a 503
            try:
                out.extend(self.outbox.store([message], atomic))
            except NotifierError as exc:
                out.append(exc)
            except Exception as exc:
                out.append(InternalError.of(exc))
        return out


__all__ = ["Intake", "make_preparer"]
