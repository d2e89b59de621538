"""Bearer-token authentication for the JSON API.

``Depends(require("messages:read"))`` gives the route the caller's :class:`Token`:
401 without a valid token, 403 when it lacks the scope (``admin`` has every scope).
Brand scoping is the route's job: :func:`visible` turns another brand into 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..tokens import Token, TokenStore
from .errors import ApiError, forbidden, not_found, unauthorized

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer nt_…` — create one with `notifier token create`.",
)


def token_store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Token:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    token = token_store(request).authenticate(credentials.credentials.strip())
    if token is None:
        raise unauthorized("the bearer token is unknown or revoked")
    request.state.token = token
    return token


def require(scope: str | None = None) -> Callable[..., Awaitable[Token]]:
    """A dependency: the caller's token, which must have ``scope`` (any scope if ``None``)."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
    ) -> Token:
        token = authenticate(request, credentials)
        if scope is not None and not token.allows(scope):
            raise forbidden(f"this token lacks the {scope!r} scope")
        return token

    dependency.__name__ = f"require_{(scope or 'token').replace(':', '_')}"
    return dependency


def visible(token: Token, brand_id: str, what: str = "not found") -> None:
    """404 unless ``token`` may see ``brand_id`` — never reveal another brand's data."""
    if not token.sees(brand_id):
        raise not_found(what)


def check_brand_write(token: Token, brand_id: object) -> ApiError | None:
    """The error for posting an event in a brand this token is not bound to, else None."""
    if token.brand is not None and isinstance(brand_id, str) and brand_id != token.brand:
        return forbidden(f"this token may only send events for brand {token.brand!r}")
    return None
