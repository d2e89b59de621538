"""The ops CLI: a thin edge over the same pipeline the API uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from .. import events as catalog
from ..config import Settings

if TYPE_CHECKING:
    from ..compose.pipeline import Composed
from ..errors import NotifierError, UnknownEvent, ValidationError

app = typer.Typer(
    help="notifier: white-label transactional mail for domain resellers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
templates_app = typer.Typer(help="Template checks.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings.load()
    except NotifierError as exc:
        fail(str(exc), 2)


def _pipeline() -> Any:
    from ..compose.pipeline import Pipeline

    try:
        return Pipeline(_settings())
    except NotifierError as exc:
        fail(str(exc), 2)


def _report(exc: NotifierError) -> NoReturn:
    if isinstance(exc, ValidationError):
        for err in exc.errors:
            typer.echo(f"error: {err.loc}: {err.message}", err=True)
        raise typer.Exit(2)
    fail(str(exc))


@app.command("events")
def events_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List the event catalog: audience, mandatory, summary (--json: with JSON Schemas)."""
    specs = list(catalog.CATALOG.values())
    if as_json:
        doc = catalog.catalog_document()
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        return
    width = max(len(s.name) for s in specs)
    for s in specs:
        flag = "mandatory" if s.mandatory else "optional "
        typer.echo(f"{s.name.ljust(width)}  {s.audience:<10}  {flag}  {s.summary}")


@app.command("brands")
def brands_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List the brands with their domains and languages."""
    from ..brands import BrandRegistry

    settings = _settings()
    try:
        registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
    except NotifierError as exc:
        fail(str(exc), 2)
    brands = registry.all()
    if as_json:
        typer.echo(
            json.dumps([b.model_dump(mode="json") for b in brands], indent=2, ensure_ascii=False)
        )
        return
    for b in brands:
        kind = "platform" if b.platform else "reseller"
        sel = b.active_selector()
        langs = f"{'/'.join(b.languages)} (default {b.default_language})"
        typer.echo(
            f"{b.id:<12} {kind:<8} {b.name:<20} from {b.from_address:<28} "
            f"links {b.link_domain:<24} {langs}  dkim {sel.name if sel else '-'}"
        )


@app.command("render")
def render_cmd(
    brand: Annotated[str, typer.Option(help="Brand id (brands/<id>.toml)")],
    event: Annotated[str, typer.Option(help="Event name, see `notifier events`")],
    lang: Annotated[str | None, typer.Option(help="Recipient's language (fi, sv, en)")] = None,
    data: Annotated[Path | None, typer.Option(help="JSON file with the event data")] = None,
    to: Annotated[str, typer.Option(help="Recipient address")] = "aino.virtanen@example.fi",
    name: Annotated[str | None, typer.Option(help="Recipient name")] = "Aino Virtanen",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the .eml here")
    ] = None,
    sign: Annotated[bool, typer.Option(help="DKIM-sign with the brand's active key")] = False,
) -> None:
    """Render one message (.eml) with sample data or --data."""
    pipeline = _pipeline()
    if data is not None:
        try:
            payload = json.loads(data.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"--data {data}: {exc}", 2)
    else:
        if event not in catalog.CATALOG:
            _report(UnknownEvent(event, sorted(catalog.CATALOG)))
        payload = dict(catalog.CATALOG[event].sample)
    raw = {
        "event": event,
        "brand": brand,
        "recipient": {"email": to, "name": name, "language": lang},
        "data": payload,
    }
    try:
        composed = pipeline.prepare(raw)
        blob = composed.outgoing.data
        if sign:
            blob = _sign(pipeline, composed)
    except NotifierError as exc:
        _report(exc)
    sender, out = composed.sender, composed.outgoing
    # what decided the message's shape, on stderr so that stdout stays a clean .eml
    typer.echo(f"policy: {sender.reason}", err=True)
    typer.echo(
        f"envelope: {out.mail_from} -> {out.rcpt_to}; DKIM d={sender.signer.mail_domain} "
        f"(signed by the worker at send time with {sender.signer.id}'s key)",
        err=True,
    )
    if sign:
        note = (
            ""
            if sender.signer.id == sender.brand.id
            else f"; the mail itself is signed with {sender.signer.id}'s key"
        )
        typer.echo(f"signed here with {sender.brand.id}'s own key for a key check{note}", err=True)
    if output is None:
        sys.stdout.buffer.write(blob)
        sys.stdout.flush()
    else:
        output.write_bytes(blob)
        typer.echo(
            f"wrote {output} ({len(blob)} bytes, {composed.rendered.language}, "
            f"brand {composed.brand.id}, {out.message_id})",
            err=True,
        )


def _sign(pipeline: Any, composed: Composed) -> bytes:
    """Sign with the brand's own key (``--sign`` is a key check): DMARC alignment is
    not the point here, so the From domain is not checked against the key."""
    from ..signing.dkim import Signer
    from ..signing.keys import KeyStore

    signer = Signer(KeyStore(pipeline.settings.keys_path))
    signed: bytes = signer.sign(composed.outgoing.data, composed.brand, check_alignment=False)
    return signed


@templates_app.command("check")
def templates_check(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="List every result")] = False,
) -> None:
    """Render every event × language × brand; fail on any error or platform leak."""
    from ..compose.checks import check_all

    pipeline = _pipeline()
    results = check_all(pipeline)
    failed = [r for r in results if not r.ok]
    for r in results if verbose else failed:
        status = "ok  " if r.ok else ("LEAK" if r.leak else "FAIL")
        detail = f": {r.problem}" if r.problem else ""
        typer.echo(f"{status} {r.brand:<10} {r.language} {r.event} [{r.variant}]{detail}")
    leaks = sum(1 for r in failed if r.leak)
    typer.echo(
        f"{len(results) - len(failed)} rendered, {len(failed) - leaks} failed, {leaks} leaks"
    )
    if failed:
        raise typer.Exit(1)


def _mount() -> None:
    """Sub-commands that live beside the modules they drive (DKIM, DNS, queue, API)."""
    from . import config as cli_config
    from . import queue as cli_queue
    from . import serve as cli_api
    from .dkim import dkim_app, dns_app

    app.add_typer(dkim_app, name="dkim")
    app.add_typer(dns_app, name="dns")
    cli_queue.register(app)
    cli_api.register(app)
    cli_config.register(app)


_mount()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
