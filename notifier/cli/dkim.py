"""``notifier dkim …`` and ``notifier dns …``: key generation and the DNS readiness check.

Two typer apps so the main CLI mounts them with ``app.add_typer(dkim_app, name="dkim")``
and ``app.add_typer(dns_app, name="dns")``. Settings come from ``ctx.obj`` when the
main CLI put a :class:`Settings` there (e.g. from a ``--config`` option), otherwise
from ``Settings.load()``. Errors print one line on stderr and exit 1; nothing here
ever prints a private key.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

from ..brands import BrandRegistry
from ..config import Settings
from ..dns.checks import all_ok, check_brand, render_json, render_table
from ..errors import NotifierError
from ..signing.keys import Algorithm, KeyStore

#: ``dns check`` exit codes: every required check ok / some failed / some unknown only.
EXIT_OK, EXIT_FAIL, EXIT_UNKNOWN = 0, 1, 3

dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True, add_completion=False)
dns_app = typer.Typer(help="Check a brand's DNS.", no_args_is_help=True, add_completion=False)


class KeyAlgorithm(StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


@dkim_app.callback()
def _dkim_group() -> None:
    """DKIM signing keys: generate one per selector and publish its record."""


@dns_app.callback()
def _dns_group() -> None:
    """DNS readiness of reseller domains."""


def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_object(Settings)
    return obj if obj is not None else Settings.load()


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@dkim_app.command("keygen")
def keygen(
    ctx: typer.Context,
    brand: Annotated[str, typer.Option("--brand", help="Brand id (brands/<id>.toml).")],
    selector: Annotated[str, typer.Option("--selector", help="New selector name.")],
    algorithm: Annotated[
        KeyAlgorithm, typer.Option("--algorithm", help="rsa, or ed25519 beside an RSA key.")
    ] = KeyAlgorithm.rsa,
    bits: Annotated[int, typer.Option("--bits", help="RSA key size (2048-4096).")] = 2048,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"name","type","value"} only.')
    ] = False,
) -> None:
    """Create a private key in the key store and print the DNS TXT record to publish.

    Refuses to overwrite an existing selector: rotate by generating a new one,
    publishing it, then activating it in the brand file.
    """
    try:
        settings = _settings(ctx)
        registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
        the_brand = registry.get(brand)
        store = KeyStore(settings.keys_path)
        alg: Algorithm = "ed25519" if algorithm is KeyAlgorithm.ed25519 else "rsa"
        record = store.generate(the_brand, selector, alg, bits)
        path = store.path(the_brand.id, selector)
    except NotifierError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(record.record_json()))
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


@dns_app.command("check")
def check(
    ctx: typer.Context,
    brand: Annotated[str, typer.Option("--brand", help="Brand id (brands/<id>.toml).")],
    nameserver: Annotated[
        str | None,
        typer.Option("--nameserver", help="Ask this server (HOST[:PORT]) instead of the system's."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per lookup before 'unknown'.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check DKIM, SPF, DMARC, alignment and the link domain of a brand.

    Exit 0 when every required check is ok, 1 when one failed, 3 when DNS could not
    answer (timeout, SERVFAIL) and nothing failed.
    """
    try:
        settings = _settings(ctx)
        registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
        the_brand = registry.get(brand)
        checks = check_brand(
            the_brand,
            settings,
            KeyStore(settings.keys_path),
            nameserver=nameserver,
            timeout=timeout,
        )
    except NotifierError as exc:
        _fail(exc)
    typer.echo(render_json(checks, the_brand.id) if as_json else render_table(checks, the_brand.id))
    if all_ok(checks):
        raise typer.Exit(EXIT_OK)
    failed = any(c.status == "fail" for c in checks if c.required)
    raise typer.Exit(EXIT_FAIL if failed else EXIT_UNKNOWN)
