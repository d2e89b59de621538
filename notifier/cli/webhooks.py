"""``notifier webhook add|list|show|disable|enable|rotate-secret|replay|delete``: status
webhook endpoints for internal services.

``add`` and ``rotate-secret`` print the ``whsec_…`` secret once; it is stored sealed
and never shown again.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from .common import command, load_settings, new_group

if TYPE_CHECKING:
    from ..config import Settings
    from ..outbox import Outbox
    from ..outbox.webhook_model import Endpoint

JSON_HELP = "Print JSON instead of text."
ID_HELP = "The endpoint's id (from `webhook list`)."


def _outbox(settings: Settings) -> Outbox:
    from ..outbox import open_outbox

    return open_outbox(settings)


def _when(value: float | None) -> str:
    return "-" if value is None else f"{datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M}Z"


def _line(e: Endpoint) -> str:
    state = e.state if e.state == "enabled" else f"disabled ({e.disabled_reason})"
    failing = f"  failing since {_when(e.failing_since)}" if e.failing_since else ""
    return (
        f"{e.id:<4} {e.url}  [{','.join(e.events)}] brand {e.brand or '*'}  {state}  "
        f"last success {_when(e.last_success_at)}  pending {e.pending}{failing}"
    )


def webhook_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(metavar="URL", help="Where to POST (http or https).")],
    events: Annotated[
        str,
        typer.Option(metavar="E1,E2", help="Event types, comma-separated (* for all)."),
    ],
    brand: Annotated[
        str | None, typer.Option(metavar="BRAND", help="Only this brand's events.")
    ] = None,
    description: Annotated[str, typer.Option(metavar="TEXT", help="Who receives it.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Register an endpoint; prints its id and its signing secret (shown once)."""
    from ..brands import BrandRegistry
    from ..feedback import endpoints

    settings = load_settings(ctx)
    known = [b.id for b in BrandRegistry(settings.brands_dir, settings.platform_brand).all()]
    with _outbox(settings) as outbox:
        endpoint, secret = endpoints.add(
            outbox,
            settings.secret(),
            url=url,
            events=events,
            brand=brand,
            known_brands=known,
            description=description,
            allow_private=settings.webhook_allow_private,
        )
    if as_json:
        typer.echo(json.dumps({**endpoint.as_dict(), "secret": str(secret)}))
        return
    typer.echo(f"{endpoint.id} {secret}")
    typer.echo(
        f"endpoint {endpoint.id}: {endpoint.url} for {', '.join(endpoint.events)}. "
        "Store the secret now: it is not shown again.",
        err=True,
    )


def webhook_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Endpoints with their state, failing-since, last success and disabled reason."""
    with _outbox(load_settings(ctx)) as outbox:
        found = outbox.endpoints()
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in found], indent=2))
        return
    for e in found:
        typer.echo(_line(e))


def webhook_show(
    ctx: typer.Context,
    endpoint: Annotated[int, typer.Argument(metavar="ID", help=ID_HELP)],
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=1000, help="Deliveries shown [20].")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """One endpoint and its latest deliveries (status, attempts, last answer)."""
    with _outbox(load_settings(ctx)) as outbox:
        found = outbox.endpoint(endpoint)
        log = outbox.delivery_log(endpoint, limit)
    if as_json:
        typer.echo(json.dumps({**found.as_dict(), "deliveries": log}, indent=2))
        return
    typer.echo(_line(found))
    for d in log:
        typer.echo(
            f"  evt_{d['event']:<8} {d['type']:<22} {d['status']:<9} attempts {d['attempts']}"
            f"  {d['last_code'] or ''} {d['last_error'] or ''}"
        )


def webhook_disable(
    ctx: typer.Context,
    endpoint: Annotated[int, typer.Argument(metavar="ID", help=ID_HELP)],
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Shown in `webhook list`.")] = (
        "disabled by ops"
    ),
) -> None:
    """Stop delivering to an endpoint (its pending deliveries wait)."""
    with _outbox(load_settings(ctx)) as outbox:
        e = outbox.set_endpoint_state(endpoint, False, reason)
    typer.echo(f"disabled {e.id}")


def webhook_enable(
    ctx: typer.Context,
    endpoint: Annotated[int, typer.Argument(metavar="ID", help=ID_HELP)],
) -> None:
    """Deliver to an endpoint again (after `disable`, a 410 or 3 days of failures)."""
    with _outbox(load_settings(ctx)) as outbox:
        e = outbox.set_endpoint_state(endpoint, True)
    typer.echo(f"enabled {e.id}")


def webhook_rotate(
    ctx: typer.Context,
    endpoint: Annotated[int, typer.Argument(metavar="ID", help=ID_HELP)],
    grace: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Old secret signs too for this long [24h]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """A new signing secret (printed once); the old one keeps signing during the grace."""
    from ..config import parse_duration
    from ..errors import FieldError, ValidationError
    from ..feedback import endpoints

    settings = load_settings(ctx)
    try:
        seconds = settings.webhook_rotation_grace if grace is None else parse_duration(grace)
    except (ValueError, ValidationError) as exc:
        raise ValidationError([FieldError("--grace", str(exc))]) from exc
    with _outbox(settings) as outbox:
        e, secret = endpoints.rotate(outbox, settings.secret(), endpoint, seconds)
    if as_json:
        typer.echo(json.dumps({**e.as_dict(), "secret": str(secret)}))
        return
    typer.echo(f"{e.id} {secret}")
    typer.echo(f"the old secret signs too until {_when(e.old_secret_until)}", err=True)


def webhook_replay(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(metavar="TIME", help="ISO 8601 time, or a duration ago (2h).")
    ],
    until: Annotated[
        str | None, typer.Option(metavar="TIME", help="ISO 8601 time or duration ago [now].")
    ] = None,
    endpoint: Annotated[
        int | None, typer.Option(metavar="ID", help="Only this endpoint [all enabled].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Send the events of a time range again, with their original webhook-id."""
    from ..errors import FieldError, ValidationError
    from ..feedback.endpoints import parse_time

    settings = load_settings(ctx)
    now = time.time()
    start = parse_time(since, now, "--since")
    end = now + 1 if until is None else parse_time(until, now, "--until")
    if end <= start:
        raise ValidationError([FieldError("--until", "must be after --since")])
    with _outbox(settings) as outbox:
        queued = outbox.replay_webhooks(start, end, endpoint)
    if as_json:
        typer.echo(json.dumps({"queued": queued}))
        return
    typer.echo(f"queued {queued} delivery(ies)")


def webhook_delete(
    ctx: typer.Context,
    endpoint: Annotated[int, typer.Argument(metavar="ID", help=ID_HELP)],
) -> None:
    """Remove an endpoint with its delivery history."""
    with _outbox(load_settings(ctx)) as outbox:
        outbox.delete_endpoint(endpoint)
    typer.echo(f"deleted {endpoint}")


def register(app: typer.Typer) -> None:
    """Add the ``webhook`` group to the main CLI."""
    group = new_group("Status webhooks: endpoints, secrets, replay.")
    command(group, "add")(webhook_add)
    command(group, "list")(webhook_list)
    command(group, "show")(webhook_show)
    command(group, "disable")(webhook_disable)
    command(group, "enable")(webhook_enable)
    command(group, "rotate-secret")(webhook_rotate)
    command(group, "replay")(webhook_replay)
    command(group, "delete")(webhook_delete)
    app.add_typer(group, name="webhook")


__all__ = ["register"]
