"""``notifier events``, ``brands``, ``render`` and ``templates check``: what mail looks like.

These read the catalog, the brands and the templates only; nothing is queued or sent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import events as catalog
from ..errors import UnknownEvent
from ..fields import decode_json

if TYPE_CHECKING:
    from ..compose.pipeline import Composed, Pipeline
from .common import EXIT_RUNTIME, EXIT_USAGE, command, fail, load_settings, new_group, open_pipeline

JSON_HELP = "Print JSON instead of a table."


def events_cmd(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the event catalog: audience, mandatory, summary (--json: with JSON Schemas,
    the document GET /v1/events/catalog serves)."""
    specs = list(catalog.CATALOG.values())
    if as_json:
        doc = catalog.catalog_document()
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        return
    width = max(len(s.name) for s in specs)
    for s in specs:
        flag = "mandatory" if s.mandatory else "optional "
        typer.echo(f"{s.name.ljust(width)}  {s.audience:<10}  {flag}  {s.summary}")


def brands_cmd(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the brands with their domains and languages."""
    from ..brands import BrandRegistry

    settings = load_settings()
    registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
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


def render_cmd(
    brand: Annotated[str, typer.Option(metavar="BRAND", help="Brand id (brands/<id>.toml).")],
    event: Annotated[str, typer.Option(metavar="EVENT", help="Event name, see `notifier events`.")],
    lang: Annotated[
        str | None,
        typer.Option(metavar="LANG", help="Recipient's language (fi, sv, en).", show_default=False),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="JSON file with the event data [default: sample]."),
    ] = None,
    to: Annotated[str, typer.Option(metavar="ADDRESS", help="Recipient address.")] = (
        "aino.virtanen@example.fi"
    ),
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Recipient name.")] = (
        "Aino Virtanen"
    ),
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write the .eml here, not stdout."),
    ] = None,
    sign: Annotated[bool, typer.Option(help="DKIM-sign with the brand's active key.")] = False,
) -> None:
    """Render one message (.eml) with sample data or --data."""
    pipeline = open_pipeline(load_settings(), stored_dns=True)
    if data is not None:
        try:
            payload = decode_json(data.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"--data {data}: {exc}", EXIT_USAGE)
    else:
        if event not in catalog.CATALOG:
            raise UnknownEvent(event, sorted(catalog.CATALOG))
        payload = dict(catalog.CATALOG[event].sample)
    raw = {
        "event": event,
        "brand": brand,
        "recipient": {"email": to, "name": name, "language": lang},
        "data": payload,
    }
    composed = pipeline.prepare(raw)  # the one compose sequence: as it would be sent
    blob = composed.outgoing.data
    if sign:
        blob = _sign(pipeline, composed)
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
            f"brand {composed.brand.id}, {composed.outgoing.message_id})",
            err=True,
        )


def _sign(pipeline: Pipeline, composed: Composed) -> bytes:
    """Sign with the brand's own key (``--sign`` is a key check): DMARC alignment is
    not the point here, so the From domain is not checked against the key."""
    from ..signing.dkim import Signer
    from ..signing.keys import KeyStore

    signer = Signer(KeyStore(pipeline.settings.keys_path))
    signed: bytes = signer.sign(composed.outgoing.data, composed.brand, check_alignment=False)
    return signed


def templates_check(
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="List every result, not only failures.")
    ] = False,
) -> None:
    """Render every event × language × brand; fail on any error or platform leak."""
    from ..compose.checks import check_all

    pipeline = open_pipeline(load_settings())
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
        raise typer.Exit(EXIT_RUNTIME)


def register(app: typer.Typer) -> None:
    """Add ``events``, ``brands``, ``render`` and the ``templates`` group."""
    command(app, "events")(events_cmd)
    command(app, "brands")(brands_cmd)
    command(app, "render")(render_cmd)
    templates = new_group("Template checks.")
    command(templates, "check")(templates_check)
    app.add_typer(templates, name="templates")


__all__ = ["register"]
