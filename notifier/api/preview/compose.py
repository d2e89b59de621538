"""Composing a preview: the one compose sequence, and the page's data form."""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ... import events as catalog
from ...brands import Brand
from ...compose.pipeline import Pipeline
from ...errors import (
    FieldError,
    HeaderInjection,
    RenderError,
    ValidationError,
)
from ...fields import decode_json
from ..errors import ApiError
from ..session import Session
from ..ui_text import texts
from ..web import SECURITY_HEADERS, page, ui_language
from .state import SAMPLE_EMAIL, SAMPLE_NAME, _pipeline, _state

# --- composing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    language: str
    subject: str
    sender: str
    reply_to: str | None
    to: str
    html: str
    text: str
    eml: bytes
    notice: str | None  # "via_platform" | "held" | None
    envelope: str  # the envelope sender (Return-Path)
    dkim_domain: str  # d= of the signature the worker adds


def compose_preview(
    pipeline: Pipeline, brand_id: str, event_name: str, lang: str, data: Any
) -> Preview:
    """Compose the message through the one compose sequence the intake uses (same
    sender decision, same bytes); raises ValidationError / RenderError."""
    raw = {
        "event": event_name,
        "brand": brand_id,
        "recipient": {"email": SAMPLE_EMAIL, "name": SAMPLE_NAME, "language": lang},
        "data": data,
    }
    composed = pipeline.prepare(raw)
    sender = composed.sender
    head = BytesHeaderParser(policy=email.policy.default).parsebytes(composed.outgoing.data)
    notice = "held" if sender.held else ("via_platform" if sender.via_platform else None)
    return Preview(
        language=composed.rendered.language,
        subject=str(head.get("Subject", "")),
        sender=str(head.get("From", "")),
        reply_to=str(head["Reply-To"]) if head.get("Reply-To") else None,
        to=str(head.get("To", "")),
        html=composed.rendered.html,
        text=composed.rendered.text,
        eml=composed.outgoing.data,
        notice=notice,
        envelope=composed.outgoing.mail_from,
        dkim_domain=sender.signer.mail_domain,
    )


def _groups(t: dict[str, str]) -> list[tuple[str, list[catalog.EventSpec]]]:
    out = []
    for audience in ("registrant", "reseller"):
        specs = [s for s in catalog.CATALOG.values() if s.audience == audience]
        out.append((t[f"audience_{audience}"], specs))
    return out


def _languages(brand: Brand) -> list[str]:
    return [lang for lang in ("fi", "sv", "en") if lang in brand.languages]


def _sample_text(event_name: str) -> str:
    return json.dumps(dict(catalog.CATALOG[event_name].sample), indent=2, ensure_ascii=False)


def _parse_data(text: str, t: dict[str, str]) -> tuple[Any, list[FieldError]]:
    """The form's JSON by the intake's rules; the pipeline checks the tree (a surrogate
    or an over-long number is a field error there, as in the API)."""
    try:
        return decode_json(text), []
    except RecursionError:
        return None, [FieldError("data", t["invalid_json"].format(error="nested too deeply"))]
    except ValueError as exc:
        return None, [FieldError("data", t["invalid_json"].format(error=exc))]


def _filename(brand_id: str, event_name: str, lang: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", f"{brand_id}-{event_name}-{lang}")
    return f"{base}.eml"


def _eml_response(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="message/rfc822",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


async def _preview_page(
    request: Request,
    found: Session,
    brand: Brand,
    event_name: str,
    lang: str,
    data_text: str,
    *,
    custom: bool,
    flash: str | None = None,
    flash_ok: bool = True,
    errors: list[FieldError] | None = None,
    status: int = 200,
) -> Response:
    ui = ui_language(request)
    t = texts(ui)
    errors = list(errors or [])
    preview: Preview | None = None
    render_error: str | None = None
    if not errors:
        data, errors = _parse_data(data_text, t)
        if not errors:
            try:
                preview = await run_in_threadpool(
                    compose_preview, _pipeline(request), brand.id, event_name, lang, data
                )
            except ValidationError as exc:
                errors = exc.errors
            except (RenderError, HeaderInjection) as exc:
                render_error = t["render_failed"].format(error=exc)
    if (errors or render_error) and status == 200:
        status = 422
    state = _state(request)
    return page(
        request,
        "preview.html",
        status=status,
        ui=ui,
        session=found,
        capture=state.capture,
        brand=brand,
        brands=_pipeline(request).brands.all() if found.admin else [],
        groups=_groups(t),
        spec=catalog.CATALOG[event_name],
        event=event_name,
        titles={name: catalog.title(name, ui) for name in catalog.CATALOG},
        lang=lang,
        langs=_languages(brand),
        custom=custom,
        data_text=data_text,
        errors=errors,
        render_error=render_error,
        preview=preview,
        flash=flash,
        flash_ok=flash_ok,
        test_address=brand.test_address,
    )


def _choose(brand: Brand, event_name: str | None, lang: str | None, ui: str) -> tuple[str, str]:
    if event_name is None:
        event_name = next(iter(catalog.CATALOG))
    elif event_name not in catalog.CATALOG:
        raise ApiError(404, texts(ui)["not_found"])
    if lang not in brand.languages:
        lang = brand.default_language
    return event_name, lang
