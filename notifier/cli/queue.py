"""CLI commands for delivery: ``worker``, ``send-test`` and ``queue stats|retry|show``.

Mounted by the main CLI with :func:`register`::

    from .queue import register
    register(app)
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ..errors import ConfigError, NotifierError, ValidationError

if TYPE_CHECKING:
    from ..config import Settings
    from ..outbox import Outbox


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _report(exc: NotifierError) -> NoReturn:
    if isinstance(exc, ValidationError):
        for err in exc.errors:
            typer.echo(f"error: {err.loc}: {err.message}", err=True)
        raise typer.Exit(2)
    notes = getattr(exc, "__notes__", None) or []
    _fail("; ".join([str(exc), *notes]), 2 if isinstance(exc, ConfigError) else 1)


def _settings() -> Settings:
    from ..config import Settings

    try:
        return Settings.load()
    except NotifierError as exc:
        _fail(str(exc), 2)


def _outbox() -> Outbox:
    from ..outbox import open_outbox

    try:
        return open_outbox(_settings())
    except NotifierError as exc:
        _fail(str(exc), 2)


# --- worker ------------------------------------------------------------------------------


def worker_cmd(
    batch: Annotated[
        int | None, typer.Option(help="Messages leased per claim [100]", min=1)
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Sends in flight at once [16]", min=1)
    ] = None,
    poll: Annotated[
        float | None, typer.Option(help="Seconds between claims when idle [1.0]", min=0.01)
    ] = None,
    smtp: Annotated[
        str | None, typer.Option(help="Relay URL (default NOTIFIER_SMTP_URL; unset: capture)")
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when nothing is due")
    ] = False,
) -> None:
    """Deliver queued mail until SIGTERM (run several for more throughput)."""
    import logging

    from ..worker.loop import WorkerConfig, serve

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    settings = _settings()
    try:
        config = WorkerConfig.from_env(
            batch_size=batch, concurrency=concurrency, poll_interval=poll
        )
        stats = asyncio.run(serve(settings, config=config, smtp_url=smtp, until_idle=until_idle))
    except NotifierError as exc:
        _report(exc)
    typer.echo(json.dumps(stats.as_dict()), err=True)


# --- send-test -----------------------------------------------------------------------------


def send_test_cmd(
    brand: Annotated[str, typer.Option(help="Brand id (brands/<id>.toml)")],
    event: Annotated[str, typer.Option(help="Event name, see `notifier events`")],
    to: Annotated[str, typer.Option(help="Recipient address")],
    lang: Annotated[str | None, typer.Option(help="Recipient's language (fi, sv, en)")] = None,
    smtp: Annotated[
        str | None,
        typer.Option(help="smtp://host:port (default NOTIFIER_SMTP_URL; unset: capture)"),
    ] = None,
) -> None:
    """Render EVENT with sample data, sign it and send it now; print the SMTP reply."""
    from .. import events as catalog
    from ..compose.pipeline import Pipeline
    from ..delivery import transport_from_url
    from ..delivery.transport import Envelope
    from ..errors import UnknownEvent
    from ..outbox.base import describe, dkim_identity, plan
    from ..worker.loop import make_signer

    settings = _settings()
    if event not in catalog.CATALOG:
        _report(UnknownEvent(event, sorted(catalog.CATALOG), "--event"))
    raw = {
        "event": event,
        "brand": brand,
        "recipient": {"email": to, "language": lang},
        "data": dict(catalog.CATALOG[event].sample),
    }
    try:
        pipeline = Pipeline(settings)
        validated = pipeline.validate(raw)
        planned = plan(pipeline, validated)
        if planned.held:
            typer.echo(f"warning: {planned.reason}; sending the test anyway", err=True)
        out = planned.composed.outgoing
        signed = make_signer(settings).sign(out.data, planned.signer)
        transport = transport_from_url(smtp or settings.smtp_url, settings.mail_dir)
    except ValidationError as exc:
        # name the options, not the intake fields
        renamed = {"recipient.email": "--to", "recipient.language": "--lang", "brand": "--brand"}
        for err in exc.errors:
            err.loc = renamed.get(err.loc, err.loc)
        _report(exc)
    except NotifierError as exc:
        _report(exc)

    async def send() -> Any:
        try:
            return await transport.send(
                Envelope(out.message_id, planned.mail_from, out.rcpt_to, signed)
            )
        finally:
            await transport.close()

    result = asyncio.run(send())
    domain, selector = dkim_identity(signed)
    typer.echo(f"Message-ID: {out.message_id}")
    typer.echo(
        f"From brand: {planned.composed.brand.id}, signed d={domain} s={selector}, "
        f"envelope {planned.mail_from} -> {out.rcpt_to}"
    )
    typer.echo(f"{result.outcome}: {describe(result)}")
    if result.outcome != "sent":
        raise typer.Exit(1)


# --- queue -------------------------------------------------------------------------------


def stats_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Messages per state, due now, expired leases, suppressed addresses."""
    with _outbox() as outbox:
        try:
            stats = outbox.stats()
        except NotifierError as exc:
            _report(exc)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"database   {stats['database']}")
    for status, count in stats["by_status"].items():
        typer.echo(f"{status:<10} {count}")
    typer.echo(f"{'total':<10} {stats['total']}")
    age = stats["oldest_due_age_s"]
    typer.echo(f"due now    {stats['due']}" + (f" (oldest waiting {age:.0f} s)" if age else ""))
    if stats["next_deferred_at"]:
        typer.echo(f"next retry {stats['next_deferred_at']}")
    typer.echo(
        f"expired leases {stats['expired_leases']}, "
        f"suppressed addresses {stats['suppressed_addresses']}"
    )


def retry_cmd(
    message: Annotated[int | None, typer.Argument(help="Message id", show_default=False)] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed message")] = False,
) -> None:
    """Queue a failed, deferred or held message (or all failed ones) for delivery now."""
    if (message is None) == (not failed):
        _fail("give a message id or --failed (not both)", 2)
    with _outbox() as outbox:
        try:
            if failed:
                count = outbox.retry_failed()
                typer.echo(f"queued {count} failed message(s) for delivery")
                return
            assert message is not None
            record = outbox.retry(message)
        except NotifierError as exc:
            _report(exc)
    typer.echo(f"message {record.id} is {record.status}; next attempt now")


def show_cmd(
    message: Annotated[int, typer.Argument(help="Message id", show_default=False)],
    raw: Annotated[bool, typer.Option("--raw", help="Print the message exactly as sent")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """A message's state, evidence and attempts (or, with --raw, its bytes as sent)."""
    with _outbox() as outbox:
        try:
            if raw:
                blob = outbox.raw(message)
            else:
                record = outbox.get(message)
        except NotifierError as exc:
            _report(exc)
    if raw:
        if not blob.signed:
            typer.echo(
                f"note: message {message} has not been sent yet; these are the "
                "unsigned bytes as queued",
                err=True,
            )
        sys.stdout.buffer.write(blob.data)
        sys.stdout.flush()
        return
    data = record.as_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    attempts = data.pop("attempt_log")
    width = max(len(k) for k in data)
    for key, value in data.items():
        if value is not None:
            typer.echo(f"{key:<{width}}  {value}")
    typer.echo(f"attempts ({len(attempts)}):")
    for a in attempts:
        what = " ".join(str(x) for x in (a["code"], a["enhanced"]) if x is not None)
        dup = "  [possible duplicate]" if a["possible_duplicate"] else ""
        typer.echo(f"  {a['at']}  {a['outcome']:<9} {a['host'] or '-'}  {what}  {a['text']}{dup}")


def unsuppress_cmd(
    brand: Annotated[str, typer.Option(help="Brand id")],
    address: Annotated[str, typer.Argument(help="E-mail address", show_default=False)],
) -> None:
    """Take an address off a brand's suppression list."""
    with _outbox() as outbox:
        try:
            removed = outbox.unsuppress(brand, address)
        except NotifierError as exc:
            _report(exc)
    if not removed:
        _fail(f"{address} is not on brand {brand}'s suppression list")
    typer.echo(f"removed {address} from brand {brand}'s suppression list")


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``send-test`` and the ``queue`` group to the main CLI."""
    app.command("worker")(worker_cmd)
    app.command("send-test")(send_test_cmd)
    queue_app = typer.Typer(help="Inspect and operate the outbox.", no_args_is_help=True)
    queue_app.command("stats")(stats_cmd)
    queue_app.command("retry")(retry_cmd)
    queue_app.command("show")(show_cmd)
    queue_app.command("unsuppress")(unsuppress_cmd)
    app.add_typer(queue_app, name="queue")


__all__ = ["register"]
