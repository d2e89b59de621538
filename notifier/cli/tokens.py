"""``notifier token create|list|revoke``: API tokens.

``token create`` prints the new token once; only its hash is stored.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from .common import command, fail, load_settings, new_group, open_pipeline

if TYPE_CHECKING:
    from ..compose.pipeline import Pipeline
    from ..config import Settings
    from ..tokens import TokenStore

JSON_HELP = "Print JSON instead of text."


def _store(settings: Settings) -> tuple[TokenStore, Pipeline]:
    from ..api.store import open_store
    from ..tokens import TokenStore

    pipeline = open_pipeline(settings)
    return TokenStore(open_store(settings, pipeline)), pipeline


def token_create(
    ctx: typer.Context,
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="events:write, messages:read or admin (repeatable, or comma-separated).",
        ),
    ],
    brand: Annotated[
        str | None,
        typer.Option(metavar="BRAND", help="Bind to one brand (a reseller's token)."),
    ] = None,
    label: Annotated[str, typer.Option(metavar="TEXT", help="A note: who or what uses it.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Create a token and print it once; only its hash is kept."""
    store, pipeline = _store(load_settings(ctx))
    scopes = [part for value in scope for part in value.split(",")]
    if brand is not None:
        pipeline.brands.get(brand, "--brand")
    record, secret = store.create(scopes, brand=brand, label=label)
    if as_json:
        typer.echo(json.dumps({**record.as_dict(), "token": secret}))
        return
    typer.echo(secret)
    where = f"brand {brand}" if brand else "every brand"
    typer.echo(
        f"token {record.id}: {' '.join(sorted(record.scopes))} for {where}. "
        "Store it now: it is not shown again.",
        err=True,
    )


def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[
        str, typer.Argument(metavar="TOKEN_ID", help="The token's id (from `token list`).")
    ],
) -> None:
    """Revoke a token; requests with it fail from now on."""
    store, _ = _store(load_settings(ctx))
    if not store.revoke(token_id):
        fail(f"no active token {token_id!r}")
    typer.echo(f"revoked {token_id}")


def token_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List tokens (ids, scopes, brands; never the secrets)."""
    store, _ = _store(load_settings(ctx))
    records = store.list()
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    for r in records:
        state = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "active"
        typer.echo(
            f"{r.id}  {' '.join(sorted(r.scopes)):<30} {r.brand or '*':<12} "
            f"{r.created_at:%Y-%m-%d %H:%M}  {state:<18} {r.label}"
        )


def register(app: typer.Typer) -> None:
    """Add the ``token`` group to the main CLI."""
    tokens = new_group("API tokens (stored only as hashes).")
    command(tokens, "create")(token_create)
    command(tokens, "revoke")(token_revoke)
    command(tokens, "list")(token_list)
    app.add_typer(tokens, name="token")


__all__ = ["register"]
