"""``/u/{token}``: one-click unsubscribe (RFC 8058) and its confirmation page.

Mail carries ``List-Unsubscribe: <https://<link domain>/u/<token>>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; a mail client POSTs
``List-Unsubscribe=One-Click`` there. A GET (a person clicking the link, or a link
scanner) only shows a page asking to confirm, so scanners never unsubscribe anyone.
The token is encrypted and authenticated (see :mod:`notifier.compose.unsubscribe`): it
cannot be forged for another address and does not show one; links in mail sent
before encryption still work. The choice is recorded
as a suppression of the address for the brand in the outbox (mandatory notices are
never suppressed). The page speaks the language of the mail the link came in (the
token carries it); for links sent before that, the browser's ``Accept-Language``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..brands import Brand
from ..compose import unsubscribe as links
from ..errors import StorageError, ValidationError
from .errors import RETRY_AFTER_SECONDS
from .store import Store
from .ui_text import choose
from .web import page

router = APIRouter(include_in_schema=False)

MAX_TOKEN = 600


def _read(request: Request, token: str) -> tuple[links.Subscription, Brand] | None:
    if len(token) > MAX_TOKEN:
        return None
    try:
        sub = links.read_token(request.app.state.settings.secret(), token)
        brand = request.app.state.pipeline.brands.get(sub.brand)
    except ValidationError:
        return None
    except (ValueError, TypeError):  # a validly signed payload of the wrong shape
        return None
    return sub, brand


def _page(
    request: Request,
    state: str,
    token: str,
    found: tuple[links.Subscription, Brand] | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    brand = found[1] if found else None
    header = request.headers.get("accept-language")
    if brand is None:
        ui = choose(header)
    elif found and found[0].language in brand.languages:
        ui = found[0].language  # the language of the mail the link came in
    else:  # a link sent before tokens carried it
        ui = choose(header, brand.languages, brand.default_language)
    colors = brand.colors if brand else None
    return page(
        request,
        "unsubscribe.html",
        status=status,
        headers=headers,
        ui=ui,
        state=state,
        token=token,
        brand=brand,
        email=found[0].email if found else "",
        primary=colors.primary if colors else "#1f4e79",
        accent=colors.accent if colors else "#f2f6fa",
        text_color=colors.text if colors else "#1d1d1f",
        button_text=colors.button_text if colors else "#ffffff",
    )


@router.get("/u/{token}")
async def confirm(request: Request, token: str) -> Response:
    found = _read(request, token)
    if found is None:
        return _page(request, "invalid", token, None, status=404)
    return _page(request, "ask", token, found)


@router.post("/u/{token}")
async def one_click(request: Request, token: str) -> Response:
    found = _read(request, token)
    if found is None:
        return _page(request, "invalid", token, None, status=404)
    # The body ("List-Unsubscribe=One-Click", urlencoded or multipart) carries nothing
    # the signed token does not already say.
    sub, brand = found
    store: Store = request.app.state.store
    try:
        reason = f"unsubscribed from {sub.event} (one-click)"
        await store.suppress(brand.id, sub.email, reason, sub.event)
    except StorageError:
        return _page(
            request,
            "failed",
            token,
            found,
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return _page(request, "done", token, found)
