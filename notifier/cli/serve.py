"""``notifier serve`` and ``notifier token …``.

Wire into the main CLI with ``register(app)``. ``serve`` runs the HTTP API and the
delivery worker in one process (uvicorn, one event loop). ``token create`` prints the
new token once; only its hash is stored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ..config import Settings
from ..errors import NotifierError, ValidationError

if TYPE_CHECKING:
    from ..compose.pipeline import Pipeline
    from ..tokens import TokenStore

token_app = typer.Typer(
    help="API tokens (stored only as hashes).", no_args_is_help=True, add_completion=False
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(ctx: typer.Context | None = None) -> Settings:
    found = ctx.find_object(Settings) if ctx is not None else None
    if found is not None:
        return found
    try:
        return Settings.load()
    except NotifierError as exc:
        _fail(str(exc), 2)


def _store(settings: Settings) -> tuple[TokenStore, Pipeline]:
    from ..api.store import open_store
    from ..compose.pipeline import Pipeline
    from ..tokens import TokenStore

    try:
        pipeline = Pipeline(settings)
    except NotifierError as exc:
        _fail(str(exc), 2)
    return TokenStore(open_store(settings, pipeline)), pipeline


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8025,
    worker: Annotated[bool, typer.Option(help="Also run the delivery worker")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
    intake_processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes that validate and render large batches; 0: in this process "
            "[default: NOTIFIER_INTAKE_PROCESSES, else one per core]",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API, the preview pages and (by default) the delivery worker."""
    import uvicorn

    from ..api import create_app

    settings = _settings(ctx)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        # read here, once: a bad NOTIFIER_* value is a message now, not a traceback later
        outbox_config = dataclasses.replace(
            settings.outbox_config(),
            # serve's default: one per core
            intake_processes=intake_processes
            if intake_processes is not None
            else settings.intake_process_count(default="auto"),
        )
        app = create_app(settings, run_worker=worker, warm_up=True, outbox_config=outbox_config)
    except NotifierError as exc:
        _fail(str(exc), 2)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=access_log,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="events:write, messages:read or admin (repeatable)"),
    ],
    brand: Annotated[
        str | None, typer.Option(help="Bind to one brand (a reseller's token)")
    ] = None,
    label: Annotated[str, typer.Option(help="A note: who or what uses it")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Create a token and print it once; only its hash is kept."""
    settings = _settings(ctx)
    store, pipeline = _store(settings)
    scopes = [part for value in scope for part in value.split(",")]
    try:
        if brand is not None:
            pipeline.brands.get(brand, "--brand")
        record, secret = store.create(scopes, brand=brand, label=label)
    except ValidationError as exc:
        for err in exc.errors:
            typer.echo(f"error: {err.loc}: {err.message}", err=True)
        raise typer.Exit(2) from None
    except NotifierError as exc:
        _fail(str(exc))
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


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id (from `token list`)")],
) -> None:
    """Revoke a token; requests with it fail from now on."""
    store, _ = _store(_settings(ctx))
    try:
        revoked = store.revoke(token_id)
    except NotifierError as exc:
        _fail(str(exc))
    if not revoked:
        _fail(f"no active token {token_id!r}")
    typer.echo(f"revoked {token_id}")


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List tokens (ids, scopes, brands; never the secrets)."""
    store, _ = _store(_settings(ctx))
    try:
        records = store.list()
    except NotifierError as exc:
        _fail(str(exc))
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
    """Add ``serve`` and ``token`` to the main CLI."""
    app.command("serve")(serve)
    app.add_typer(token_app, name="token")


def main() -> None:  # pragma: no cover - ``python -m notifier.cli_api`` before wiring
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    register(app)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
