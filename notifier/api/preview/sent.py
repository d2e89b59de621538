"""Sent mail: a brand's own messages, their attempts and replies, and the bytes as sent.

Every route takes the brand from the path and checks it against the session
(:func:`_brand`), and every message it shows must belong to that brand: a reseller
sees its own mail and nothing else, whatever id it types (another brand's message is
"not found", as in the API).
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ... import events as catalog
from ...brands import Brand
from ...errors import FieldError, StorageError
from ...fields import domain_to_ascii, domain_to_unicode
from ...outbox.feedback import ReportRecord
from ...outbox.model import MessageNotFound, MessageRecord, RawMessage
from ...outbox.sql import STATES
from ..errors import ApiError
from ..store import OutboxStore
from ..ui_text import Texts, texts
from ..web import page, ui_language
from .captured import _part, mail_language
from .compose import _eml_response
from .state import _brand, _signed_in, _state, router

#: messages per page of the list
PAGE_SIZE = 25

MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@dataclass(frozen=True)
class Feedback:
    """One bounce, complaint or block learned about a message."""

    kind: str  # bounce | complaint | suppressed
    hard: bool
    at: datetime | None
    code: int | None
    enhanced: str | None
    text: str


def feedback_rows(record: MessageRecord, reports: Sequence[ReportRecord] = ()) -> list[Feedback]:
    """What the sent-mail page shows under "bounces and complaints" for one message:
    what delivery itself learned (a permanent SMTP refusal, which also suppresses the
    address; a message never sent because the address was already suppressed) and the
    reports ``notifier inbound`` matched to it (asynchronous DSNs, ARF complaints;
    auto-replies are not feedback and are left out). The one place the page asks."""
    rows = [
        Feedback("bounce", True, a.at, a.code, a.enhanced, a.text)
        for a in record.attempt_log
        if a.outcome == "permanent"
    ]
    for r in reports:
        if r.kind in ("hard_bounce", "soft_bounce"):
            hard = r.kind == "hard_bounce"
            rows.append(
                Feedback("bounce", hard, r.received_at, r.code, r.enhanced, r.diagnostic or "")
            )
        elif r.kind == "complaint":
            rows.append(
                Feedback("complaint", True, r.received_at, None, None, r.feedback_type or "")
            )
    if str(record.status) == "suppressed":
        rows.append(Feedback("suppressed", True, record.updated_at, None, None, ""))
    return rows


@dataclass(frozen=True)
class Search:
    recipient: str = ""
    domain: str = ""
    event: str = ""
    state: str = ""

    def query(self, **extra: Any) -> dict[str, Any]:
        """The search as URL parameters (for the paging links)."""
        base = {k: v for k, v in vars(self).items() if v}
        return {**base, **extra}


def _checked(search: Search, t: Texts) -> tuple[Search, list[FieldError]]:
    """The search with its values normalised as the outbox stores them, and what is
    wrong with it (shown beside the form; the list is then not searched)."""
    errors = []
    recipient = search.recipient.strip().lower()
    local, at, host = recipient.rpartition("@")
    if recipient and (not at or not local or not host or any(c.isspace() for c in recipient)):
        errors.append(FieldError("recipient", t["bad_recipient"]))
    domain = search.domain.strip()
    if domain:
        try:
            domain = domain_to_unicode(domain_to_ascii(domain))
        except ValueError:
            errors.append(FieldError("domain", t["bad_domain"]))
    if search.event and search.event not in catalog.CATALOG:
        errors.append(FieldError("event", t["bad_choice"]))
    if search.state and search.state not in STATES:
        errors.append(FieldError("state", t["bad_choice"]))
    return Search(recipient, domain, search.event, search.state), errors


def _outbox(request: Request) -> Any:
    store = request.app.state.store
    if not isinstance(store, OutboxStore):
        raise StorageError("the message store is unavailable")
    return store.outbox


def _own(request: Request, brand: Brand, record: MessageRecord | None) -> MessageRecord:
    """The message if it is this brand's; "not found" for any other."""
    if record is None or record.brand != brand.id:
        raise ApiError(404, texts(ui_language(request))["not_found"])
    return record


def _get(outbox: Any, message_id: int) -> MessageRecord | None:
    try:
        record: MessageRecord = outbox.get(message_id)
    except MessageNotFound:
        return None
    return record


def local_time(value: datetime | None, tz: ZoneInfo) -> str:
    """A moment in the brand's time zone, as its customers' clocks show it."""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") if value else ""


def _last_reply(record: MessageRecord) -> str:
    if record.attempt_log:
        a = record.attempt_log[-1]
        return " ".join(str(p) for p in (a.code, a.enhanced, a.text) if p)
    return record.reason or ""


@router.get("/brands/{brand_id}/sent")
async def sent_list(
    request: Request,
    brand_id: str,
    recipient: Annotated[str, Query(max_length=320)] = "",
    domain: Annotated[str, Query(max_length=253)] = "",
    event: Annotated[str, Query(max_length=80)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    t = texts(ui_language(request))
    search, errors = _checked(Search(recipient, domain, event, state), t)
    records: list[MessageRecord] = []
    older: int | None = None
    if not errors:
        outbox = _outbox(request)
        records = await run_in_threadpool(
            outbox.search,
            brand=brand.id,
            status=search.state or None,
            event=search.event or None,
            recipient=search.recipient or None,
            domain=search.domain or None,
            before=before,
            limit=PAGE_SIZE + 1,
        )
        if len(records) > PAGE_SIZE:
            records = records[:PAGE_SIZE]
            older = records[-1].id
    return page(
        request,
        "sent.html",
        status=422 if errors else 200,
        session=found,
        capture=_state(request).capture,
        brand=brand,
        search=search,
        errors=errors,
        error_fields={e.loc for e in errors},
        records=records,
        rows=[(r, local_time(r.created_at, brand.tz), _last_reply(r)) for r in records],
        older=search.query(before=older) if older else None,
        newest=search.query() if before else None,
        events=list(catalog.CATALOG),
        titles={name: catalog.title(name, ui_language(request)) for name in catalog.CATALOG},
        states=STATES,
    )


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [
        (k, str(message.get(k)))
        for k in ("Date", "From", "Reply-To", "To", "Subject", "Message-ID")
        if message.get(k)
    ]


@router.get("/brands/{brand_id}/sent/{message_id}")
async def sent_view(request: Request, brand_id: str, message_id: MessageId) -> Response:
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    outbox = _outbox(request)
    record = _own(request, brand, await run_in_threadpool(_get, outbox, message_id))
    raw: RawMessage | None
    try:
        raw = await run_in_threadpool(outbox.raw, record.id)
    except (StorageError, MessageNotFound):
        raw = None  # the record and its attempts are still worth showing
    reports = await run_in_threadpool(outbox.message_reports, record.id)
    message = None
    if raw is not None:
        parsed = email.message_from_bytes(raw.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message = parsed
    tz = brand.tz
    return page(
        request,
        "sent_view.html",
        titles={name: catalog.title(name, ui_language(request)) for name in catalog.CATALOG},
        session=found,
        capture=_state(request).capture,
        brand=brand,
        record=record,
        when={
            "created": local_time(record.created_at, tz),
            "sent": local_time(record.sent_at, tz),
            "next": local_time(record.next_attempt_at, tz)
            if str(record.status) in ("deferred", "queued")
            else "",
        },
        attempts=[(a, local_time(a.at, tz)) for a in record.attempt_log],
        feedback=[(f, local_time(f.at, tz)) for f in feedback_rows(record, reports)],
        signed=raw.signed if raw else False,
        mail_headers=_headers(message) if message else [],
        mail_lang=mail_language(message, record.language) if message else record.language,
        html=_part(message, "html") if message else "",
        text=_part(message, "plain") if message else "",
    )


@router.get("/brands/{brand_id}/sent/{message_id}/eml")
async def sent_eml(request: Request, brand_id: str, message_id: MessageId) -> Response:
    """The exact bytes as last sent (signed), or as queued if never sent, checked
    against their recorded SHA-256 (a mismatch is a 503, never altered bytes)."""
    found = _signed_in(request)
    brand = _brand(request, found, brand_id)
    outbox = _outbox(request)
    record = _own(request, brand, await run_in_threadpool(_get, outbox, message_id))
    raw: RawMessage = await run_in_threadpool(outbox.raw, record.id)
    return _eml_response(raw.data, f"{brand.id}-message-{record.id}.eml")
