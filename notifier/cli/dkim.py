"""``notifier dkim keygen``: a signing key per brand and selector, and the record to publish.

Nothing here ever prints a private key.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from .common import command, load_settings, new_group


class KeyAlgorithm(StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


dkim_app = new_group("DKIM signing keys.")


@dkim_app.callback()
def _dkim_group() -> None:
    """DKIM signing keys: generate one per selector and publish its record."""


def keygen(
    ctx: typer.Context,
    brand: Annotated[
        str, typer.Option("--brand", metavar="BRAND", help="Brand id (brands/<id>.toml).")
    ],
    selector: Annotated[
        str, typer.Option("--selector", metavar="SELECTOR", help="New selector name.")
    ],
    algorithm: Annotated[
        KeyAlgorithm,
        typer.Option(
            "--algorithm", metavar="[rsa|ed25519]", help="rsa, or ed25519 beside an RSA key."
        ),
    ] = KeyAlgorithm.rsa,
    bits: Annotated[
        int, typer.Option("--bits", metavar="BITS", help="RSA key size (2048-4096).")
    ] = 2048,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print only {"name", "type", "value", "zone_record"}: value is the plain '
            "TXT text, zone_record the zone-file line with its quoted strings.",
        ),
    ] = False,
) -> None:
    """Create a private key in the key store and print the DNS TXT record to publish.

    Refuses to overwrite an existing selector: rotate by generating a new one,
    publishing it, then activating it in the brand file.
    """
    from ..brands import BrandRegistry
    from ..signing.keys import Algorithm, KeyStore

    settings = load_settings(ctx)
    registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
    the_brand = registry.get(brand, "--brand")
    store = KeyStore(settings.keys_path)
    alg: Algorithm = "ed25519" if algorithm is KeyAlgorithm.ed25519 else "rsa"
    record = store.generate(the_brand, selector, alg, bits)
    path = store.path(the_brand.id, selector)
    if as_json:
        doc = {
            "name": record.name,
            "type": record.type,
            "value": record.value,
            "zone_record": record.zone_line(),
        }
        typer.echo(json.dumps(doc))
        return
    typer.echo(f"Wrote {algorithm.value} key for brand {the_brand.id}, selector {selector}: {path}")
    typer.echo("Publish this TXT record:")
    typer.echo(f"  name:  {record.name}")
    typer.echo(f"  value: {record.presentation}")
    typer.echo("")
    typer.echo(record.zone_line())
    typer.echo("")
    typer.echo(
        f"Then list the selector under [[dkim]] in brands/{the_brand.id}.toml, run "
        f"`notifier dns check --brand {the_brand.id}`, and set active = true once it is ok."
    )


command(dkim_app, "keygen")(keygen)


def register(app: typer.Typer) -> None:
    """Add the ``dkim`` group to the main CLI."""
    app.add_typer(dkim_app, name="dkim")


__all__ = ["dkim_app", "register"]
