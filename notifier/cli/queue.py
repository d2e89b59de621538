"""``notifier worker``, ``send-test`` and ``queue stats|retry|show|list|unsuppress``: delivery.

Mounted by the main CLI with :func:`register`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ValidationError
from .common import (
    EXIT_DNS,
    EXIT_RUNTIME,
    EXIT_USAGE,
    command,
    fail,
    load_settings,
    new_group,
    open_pipeline,
    reporting,
)

if TYPE_CHECKING:
    from ..delivery.transport import AttemptResult
    from ..outbox import Outbox

JSON_HELP = "Print JSON instead of text."
SMTP_HELP = "smtp://host:port or direct:// [default: NOTIFIER_SMTP_URL, else capture to files]."
MESSAGE_ID = typer.Argument(metavar="MESSAGE_ID", help="Message id.", show_default=False)


def _outbox() -> Outbox:
    from ..outbox import open_outbox

    return open_outbox(load_settings())


def _dns_unanswered(result: AttemptResult) -> bool:
    """No SMTP reply because the MX lookup failed (RFC 3463 4.4.3: directory server)."""
    return result.code is None and result.enhanced == "4.4.3"


# --- worker ------------------------------------------------------------------------------


def worker_cmd(
    batch: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Messages leased per claim [default: 100]."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Sends in flight at once [default: 16]."),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", min=0.01, help="Seconds between claims when idle [default: 1.0]."
        ),
    ] = None,
    smtp: Annotated[
        str | None,
        typer.Option(metavar="URL", help=SMTP_HELP),
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when nothing is due.")
    ] = False,
) -> None:
    """Deliver queued mail until SIGTERM (run several for more throughput).

    On exit, prints a JSON summary (claimed, sent, deferred, failed, ...) on stdout;
    logs go to stderr.
    """
    import logging

    from ..worker.loop import serve

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    settings = load_settings()
    with reporting(EXIT_USAGE):  # the options are settings too
        config = settings.worker_config(
            batch_size=batch, concurrency=concurrency, poll_interval=poll
        )
    stats = asyncio.run(serve(settings, config=config, smtp_url=smtp, until_idle=until_idle))
    typer.echo(json.dumps(stats.as_dict()))


# --- send-test -----------------------------------------------------------------------------


def send_test_cmd(
    brand: Annotated[str, typer.Option(metavar="BRAND", help="Brand id (brands/<id>.toml).")],
    event: Annotated[str, typer.Option(metavar="EVENT", help="Event name, see `notifier events`.")],
    to: Annotated[str, typer.Option(metavar="ADDRESS", help="Recipient address.")],
    lang: Annotated[
        str | None,
        typer.Option(metavar="LANG", help="Recipient's language (fi, sv, en).", show_default=False),
    ] = None,
    smtp: Annotated[
        str | None,
        typer.Option(metavar="URL", help=SMTP_HELP),
    ] = None,
) -> None:
    """Render EVENT with sample data, sign it and send it now; print the SMTP reply.

    Exits 1 when the message was not accepted, 3 when the recipient's MX could not be
    looked up.
    """
    from .. import events as catalog
    from ..delivery import transport_from_url
    from ..delivery.policy import describe
    from ..delivery.transport import Envelope
    from ..errors import UnknownEvent
    from ..signing.identity import dkim_identity
    from ..worker.loop import make_signer

    settings = load_settings()
    if event not in catalog.CATALOG:
        raise UnknownEvent(event, sorted(catalog.CATALOG), "--event")
    raw = {
        "event": event,
        "brand": brand,
        "recipient": {"email": to, "language": lang},
        "data": dict(catalog.CATALOG[event].sample),
    }
    try:
        composed = open_pipeline(settings, stored_dns=True).prepare(raw)  # as it would be sent
        sender = composed.sender
        if sender.held:
            typer.echo(f"warning: {sender.reason}; sending the test anyway", err=True)
        out = composed.outgoing
        signed = make_signer(settings).sign(out.data, sender.signer)
        transport = transport_from_url(smtp or settings.smtp_url, settings.mail_dir)
    except ValidationError as exc:
        # name the options, not the intake fields
        renamed = {"recipient.email": "--to", "recipient.language": "--lang", "brand": "--brand"}
        for err in exc.errors:
            err.loc = renamed.get(err.loc, err.loc)
        raise

    async def send() -> Any:
        try:
            return await transport.send(
                Envelope(out.message_id, out.mail_from, out.rcpt_to, signed)
            )
        finally:
            await transport.close()

    result = asyncio.run(send())
    domain, selector = dkim_identity(signed)
    typer.echo(f"Message-ID: {out.message_id}")
    typer.echo(
        f"From brand: {sender.brand.id}, signed d={domain} s={selector}, "
        f"envelope {out.mail_from} -> {out.rcpt_to}"
    )
    typer.echo(f"{result.outcome}: {describe(result)}")
    if result.outcome != "sent":
        raise typer.Exit(EXIT_DNS if _dns_unanswered(result) else EXIT_RUNTIME)


# --- queue -------------------------------------------------------------------------------


def stats_cmd(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Messages per state, due now, expired leases, suppressed addresses."""
    with _outbox() as outbox:
        stats = outbox.stats()
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
    message: Annotated[int | None, MESSAGE_ID] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Retry the messages that failed recently.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="With --failed: those that failed within this long (90m, 12h, 7d) [default: 7d].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Queue a failed, deferred or held message (or the recently failed ones) for
    delivery now."""
    from ..config import parse_duration

    if (message is None) == (not failed):
        fail("give a message id or --failed (not both)", EXIT_USAGE)
    if since is not None and not failed:
        fail("--since goes with --failed", EXIT_USAGE)
    window = 7 * 86400.0
    if since is not None:
        try:
            window = parse_duration(since, "--since")
        except ValueError as exc:
            fail(f"--since: {exc}", EXIT_USAGE)
        if window <= 0:
            fail("--since: must be a positive duration (e.g. 7d)", EXIT_USAGE)
    with _outbox() as outbox:
        if failed:
            count = outbox.retry_failed(since=window)
            typer.echo(
                f"queued {count} failed message(s) for delivery "
                f"(failed within the last {since or '7d'})"
            )
            return
        assert message is not None
        record = outbox.retry(message)
    typer.echo(f"message {record.id} is {record.status}; next attempt now")


def list_cmd(
    brand: Annotated[str | None, typer.Option(metavar="BRAND", help="Brand id.")] = None,
    status: Annotated[
        str | None, typer.Option(metavar="STATE", help="queued, sent, failed, ...")
    ] = None,
    event: Annotated[str | None, typer.Option(metavar="EVENT", help="Event name.")] = None,
    recipient: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Recipient address.")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(metavar="DOMAIN", help="The domain name the mail is about (any case, IDN)."),
    ] = None,
    before: Annotated[
        int | None,
        typer.Option(metavar="ID", min=1, help="Only messages older than this id (next page)."),
    ] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=1000, help="At most N.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Find messages, newest first: every filter given must match.

    Prints one line per message; pass the last id as --before for the next page.
    """
    with _outbox() as outbox:
        try:
            records = outbox.search(
                brand=brand,
                status=status,
                event=event,
                recipient=recipient,
                domain=domain,
                before=before,
                limit=limit,
            )
        except ValidationError as exc:
            for err in exc.errors:  # name the options
                err.loc = f"--{err.loc}"
            raise
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in records], indent=2, ensure_ascii=False))
        return
    for r in records:
        typer.echo(
            f"{r.id:>10}  {r.created_at:%Y-%m-%d %H:%M}  {r.status:<10} {r.brand:<10} "
            f"{r.event:<28} {r.domain or '-':<24} {r.recipient}"
        )
    if not records:
        typer.echo("no messages match", err=True)


def show_cmd(
    message: Annotated[int, MESSAGE_ID],
    raw: Annotated[bool, typer.Option("--raw", help="Print the message exactly as sent.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """A message's state, evidence and attempts (or, with --raw, its bytes as sent)."""
    with _outbox() as outbox:
        if raw:
            blob = outbox.raw(message)
        else:
            record = outbox.get(message)
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
    brand: Annotated[str, typer.Option(metavar="BRAND", help="Brand id.")],
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="E-mail address.", show_default=False)
    ],
) -> None:
    """Take an address off a brand's suppression list."""
    with _outbox() as outbox:
        removed = outbox.unsuppress(brand, address)
    if not removed:
        fail(f"{address} is not on brand {brand}'s suppression list")
    typer.echo(f"removed {address} from brand {brand}'s suppression list")


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``send-test`` and the ``queue`` group to the main CLI."""
    command(app, "worker")(worker_cmd)
    command(app, "send-test")(send_test_cmd)
    queue_app = new_group("Inspect and operate the outbox.")
    command(queue_app, "stats")(stats_cmd)
    command(queue_app, "retry")(retry_cmd)
    command(queue_app, "show")(show_cmd)
    command(queue_app, "list")(list_cmd)
    command(queue_app, "unsuppress")(unsuppress_cmd)
    app.add_typer(queue_app, name="queue")


__all__ = ["register"]
