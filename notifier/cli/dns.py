"""``notifier dns check``: is a brand's DNS ready for sending on its own domain?

Exit 0 when every required check is ok, 1 when one failed, 3 when DNS could not answer
(timeout, SERVFAIL) and nothing failed — :data:`EXIT_DNS` of the CLI's contract, so a
script retries later instead of paging someone.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from .common import EXIT_DNS, EXIT_RUNTIME, command, load_settings, new_group

if TYPE_CHECKING:
    from ..brands import Brand, BrandRegistry
    from ..config import Settings
    from ..dns.checks import Check

#: ``dns check`` exit codes: every required check ok / some failed / some unknown only.
EXIT_OK, EXIT_FAIL, EXIT_UNKNOWN = 0, EXIT_RUNTIME, EXIT_DNS

dns_app = new_group("Check a brand's DNS.")


@dns_app.callback()
def _dns_group() -> None:
    """DNS readiness of reseller domains."""


def _nameserver(value: str | None) -> str | None:
    """A malformed ``--nameserver`` is a usage error (2); one that cannot be resolved is
    DNS not answering (3, from the check itself)."""
    from ..dns.resolver import NameserverError, parse_nameserver

    if value is not None:
        try:
            parse_nameserver(value, names=False)
        except NameserverError as exc:
            if "must be an IP address" not in str(exc):  # a name is looked up by the check
                raise typer.BadParameter(str(exc)) from None
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter("must be positive")
    return value


def check(
    ctx: typer.Context,
    brand: Annotated[
        str, typer.Option("--brand", metavar="BRAND", help="Brand id (brands/<id>.toml).")
    ],
    nameserver: Annotated[
        str | None,
        typer.Option(
            "--nameserver",
            metavar="HOST[:PORT]",
            callback=_nameserver,
            help="Ask this server instead of the system's resolver.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            callback=_positive,
            help="Seconds per lookup before 'unknown'.",
        ),
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Record the outcome, as the workers' periodic check does: a brand that "
            "passes becomes verified and its held mail is queued.",
        ),
    ] = False,
) -> None:
    """Check DKIM, SPF, DMARC, alignment and the link domain of a brand.

    Exit 0 when every required check is ok, 1 when one failed, 3 when DNS could not
    answer (timeout, SERVFAIL) and nothing failed.
    """
    from ..brands import BrandRegistry
    from ..dns.checks import check_brand, render_json, render_table
    from ..signing.keys import KeyStore

    settings = load_settings(ctx)
    registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
    the_brand = registry.get(brand, "--brand")
    if apply:
        _check_and_apply(settings, registry, the_brand, nameserver, timeout, as_json)
        return
    checks = check_brand(
        the_brand,
        settings,
        KeyStore(settings.keys_path),
        nameserver=nameserver or settings.dns_nameserver,
        timeout=timeout,
    )
    typer.echo(render_json(checks, the_brand.id) if as_json else render_table(checks, the_brand.id))
    _exit(checks)


def _exit(checks: list[Check]) -> NoReturn:
    from ..dns.checks import all_ok

    if all_ok(checks):
        raise typer.Exit(EXIT_OK)
    failed = any(c.status == "fail" for c in checks if c.required)
    raise typer.Exit(EXIT_FAIL if failed else EXIT_UNKNOWN)


def _check_and_apply(
    settings: Settings,
    registry: BrandRegistry,
    brand: Brand,
    nameserver: str | None,
    timeout: float,
    as_json: bool,
) -> NoReturn:
    """``--apply``: check, record in the outbox, print the checks and the new state."""
    from ..dns.checks import render_table
    from ..dns.verify import Verifier, outcome_of
    from ..outbox import open_outbox

    with open_outbox(settings) as outbox:
        verifier = Verifier(settings, registry, outbox, nameserver=nameserver, timeout=timeout)
        checks, recorded = verifier.check_and_record(brand, source="cli")
    now = recorded.now
    if as_json:
        doc = {
            "brand": brand.id,
            "ok": outcome_of(checks) == "ok",
            "outcome": outcome_of(checks),
            "previous": recorded.previous,
            "changed": recorded.changed,
            "released": recorded.released,
            "state": now.as_dict(),
            "checks": [c.as_dict() for c in checks],
        }
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        typer.echo(render_table(checks, brand.id))
        moved = f"{recorded.previous} → {now.state}" if recorded.changed else f"{now.state}"
        line = f"Recorded: {outcome_of(checks)}; state {moved}"
        if now.state == "broken-pending":
            line += " (one more failing check and the brand falls back to its policy)"
        if recorded.released:
            line += f"; {recorded.released} held message(s) queued"
        typer.echo(line + ".")
    _exit(checks)


def status(
    ctx: typer.Context,
    brand: Annotated[
        str | None,
        typer.Option("--brand", metavar="BRAND", help="Only this brand (default: every brand)."),
    ] = None,
    history: Annotated[
        int,
        typer.Option("--history", metavar="N", min=0, help="Also list the newest N checks."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Where each brand stands, as the periodic checks recorded it: the state that decides
    its sender, the last check and the next. Reads the outbox; queries no DNS."""
    from ..brands import BrandRegistry
    from ..dns.verify import initial_state
    from ..outbox import open_outbox

    settings = load_settings(ctx)
    registry = BrandRegistry(settings.brands_dir, settings.platform_brand)
    brands = [registry.get(brand, "--brand")] if brand else list(registry.all())
    with open_outbox(settings) as outbox:
        stored = outbox.brand_dns_all()
        checks = {b.id: outbox.brand_dns_history(b.id, history) for b in brands if history}
    rows: list[dict[str, object]] = []
    for b in brands:
        found = stored.get(b.id)
        doc: dict[str, object] = (
            found.as_dict()
            if found is not None and found.state is not None
            else {"brand": b.id, "state": None, "verified": None}
        )
        doc["platform"] = b.platform
        # never checked: the brand file's dns_verified decides until the first check
        doc["effective"] = found.state if found and found.state else initial_state(b)
        if history:
            doc["history"] = [
                {
                    "checked_at": c.checked_at.isoformat(),
                    "outcome": c.outcome,
                    "state": c.state,
                    "source": c.source,
                }
                for c in checks[b.id]
            ]
        rows.append(doc)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{'brand':<12} {'state':<18} {'failures':>8}  {'checked':<20} next check")
    for doc in rows:
        state = str(doc["state"] or f"{doc['effective']} (file)")
        typer.echo(
            f"{doc['brand']!s:<12} {state:<18} {doc.get('failures', 0)!s:>8}  "
            f"{_when(doc.get('checked_at')):<20} {_when(doc.get('next_check_at'))}"
        )
        for c in doc.get("history", []):  # type: ignore[attr-defined]
            typer.echo(
                f"    {_when(c['checked_at'])}  {c['outcome']:<8} -> {c['state']:<16} "
                f"by {c['source']}"
            )


def _when(value: object) -> str:
    """``2026-11-29T23:59:00+00:00`` → ``2026-11-29 23:59 UTC``; ``-`` for never."""
    if not value:
        return "-"
    text = str(value)
    return f"{text[:10]} {text[11:16]} UTC"


command(dns_app, "check")(check)
command(dns_app, "status")(status)


def register(app: typer.Typer) -> None:
    """Add the ``dns`` group to the main CLI."""
    app.add_typer(dns_app, name="dns")


__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_UNKNOWN", "dns_app", "register"]
