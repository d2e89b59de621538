"""Captured mail (local capture mode): the .eml files a signed-in user may see."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ..errors import ApiError
from ..session import Session
from ..ui_text import texts
from ..web import page, ui_language
from .compose import _eml_response
from .state import _EML_NAME, MAX_CAPTURED, PreviewState, _pipeline, _signed_in, _state, router

# --- captured mail (local capture mode) --------------------------------------------------


@dataclass(frozen=True)
class Captured:
    name: str
    date: str
    sender: str
    to: str
    subject: str


def _captured_files(state: PreviewState) -> list[Path]:
    if not state.mail_dir.is_dir():
        return []
    files = [p for p in state.mail_dir.iterdir() if _EML_NAME.match(p.name) and p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return files[:MAX_CAPTURED]


def _addresses(value: Any) -> set[str]:
    try:
        return {a.addr_spec.lower() for a in getattr(value, "addresses", ())}
    except (AttributeError, ValueError):
        return set()


def _may_see(found: Session, request: Request, to_header: Any) -> bool:
    """Admins see every captured mail; a reseller the mail to its own test address."""
    if found.admin:
        return True
    brand = _pipeline(request).brands.get(str(found.brand))
    return brand.test_address is not None and brand.test_address.lower() in _addresses(to_header)


def _require_capture(request: Request) -> PreviewState:
    state = _state(request)
    if not state.capture:
        raise ApiError(404, texts(ui_language(request))["not_found"])
    return state


@router.get("/mail")
async def captured_list(request: Request) -> Response:
    found = _signed_in(request)
    state = _require_capture(request)
    parser = BytesHeaderParser(policy=email.policy.default)
    mails = []
    for path in _captured_files(state):
        try:
            with path.open("rb") as fh:
                head = parser.parse(fh)
        except OSError:
            continue
        if not _may_see(found, request, head.get("To")):
            continue
        mails.append(
            Captured(
                path.name,
                str(head.get("Date", "")),
                str(head.get("From", "")),
                str(head.get("To", "")),
                str(head.get("Subject", "")),
            )
        )
    return page(request, "mail.html", session=found, capture=True, mails=mails)


def _captured(request: Request, found: Session, name: str) -> tuple[Path, EmailMessage]:
    state = _require_capture(request)
    path = state.mail_dir / name
    not_found = ApiError(404, texts(ui_language(request))["not_found"])
    if not _EML_NAME.match(name) or not path.is_file():
        raise not_found
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    if not _may_see(found, request, message.get("To")):
        raise not_found
    return path, message


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        return ""


@router.get("/mail/{name}")
async def captured_view(request: Request, name: str) -> Response:
    found = _signed_in(request)
    path, message = _captured(request, found, name)
    return page(
        request,
        "mail_view.html",
        session=found,
        capture=True,
        name=path.name,
        mail_headers=[
            (k, str(message.get(k)))
            for k in ("Date", "From", "Reply-To", "To", "Subject", "Message-ID")
            if message.get(k)
        ],
        mail_lang=mail_language(message, ui_language(request)),
        html=_part(message, "html"),
        text=_part(message, "plain"),
    )


def mail_language(message: EmailMessage, default: str) -> str:
    """The language a stored mail says it is in (``Content-Language``), for ``lang``."""
    value = str(message.get("Content-Language", "") or "").strip()
    ok = value and len(value) <= 35 and value.replace("-", "").isalnum()
    return value if ok else default


@router.get("/mail/{name}/raw")
async def captured_raw(request: Request, name: str) -> Response:
    found = _signed_in(request)
    path, _ = _captured(request, found, name)
    return _eml_response(path.read_bytes(), path.name)
