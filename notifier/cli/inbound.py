"""``notifier inbound``: receive bounces and complaints over SMTP or from a pipe, and
``notifier inbound list`` what arrived.

``--stdin`` is for an existing MTA (Postfix ``pipe``, Exim transport, ``.forward``):
exit 0 once the message is stored — whatever it turned out to be, even forged or
unreadable — and non-zero only when it could not be stored, so the MTA keeps it and
tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_RUNTIME, EXIT_USAGE, command, fail, load_settings, reporting

if TYPE_CHECKING:
    from ..outbox import Outbox

JSON_HELP = "Print JSON instead of text."


def _outbox() -> Outbox:
    from ..outbox import open_outbox

    return open_outbox(load_settings())


def inbound_main(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Listen address [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", min=0, max=65535, help="Port [default: 2526].")
    ] = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Store one message read from stdin, then exit.")
    ] = False,
    rcpt: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="--stdin: the envelope recipient (default: $ORIGINAL_RECIPIENT or $RECIPIENT).",
        ),
    ] = None,
    sender: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="--stdin: the envelope sender.")
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            max=64,
            help="Server processes sharing the port (SO_REUSEPORT); one per core.",
        ),
    ] = 1,
) -> None:
    """Receive bounces and complaints: an SMTP server for the bounce domains (their MX),
    or one message from stdin with --stdin."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    with reporting():
        if stdin:
            if processes != 1:
                fail("--processes is for the SMTP server, not --stdin", EXIT_USAGE)
            _stdin(rcpt, sender)
            return
        host = host or settings.inbound_host
        port = settings.inbound_port if port is None else port
        if processes == 1:
            _serve(host, port)
        elif port == 0:
            fail("--processes needs a fixed --port (0 would give each its own)", EXIT_USAGE)
        else:
            _supervise(host, port, processes)


def _stdin(rcpt: str | None, sender: str | None) -> None:
    from ..errors import StorageError
    from ..feedback.inbound import Incoming, receiver_from_settings

    settings = load_settings()
    raw = sys.stdin.buffer.read(settings.inbound_max_size + 1)
    if len(raw) > settings.inbound_max_size:
        fail(f"the message is larger than inbound_max_size ({settings.inbound_max_size} bytes)")
    rcpt = rcpt or os.environ.get("ORIGINAL_RECIPIENT") or os.environ.get("RECIPIENT")
    sender = sender if sender is not None else os.environ.get("SENDER")
    try:
        with _outbox() as outbox:
            receiver = receiver_from_settings(settings, outbox)
            [stored] = receiver.store([Incoming(raw, sender, (rcpt,) if rcpt else ())])
            outbox.apply_pending()  # bounces that came before their message was recorded
    except StorageError as exc:
        fail(f"the report could not be stored: {exc}", EXIT_RUNTIME)
    if not stored:
        typer.echo("dropped: forged VERP address (counted)", err=True)
        return
    for record in stored:
        typer.echo(f"stored report {record.id}: {record.kind}, {record.outcome}")


def _serve(host: str, port: int, *, reuse_port: bool = False, apply_pending: bool = True) -> None:
    from ..feedback.inbound import InboundServer, receiver_from_settings

    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs every command of every session at INFO: thousands of lines a second
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with _outbox() as outbox:
            receiver = receiver_from_settings(settings, outbox)
            server = InboundServer(
                receiver,
                host,
                port,
                max_size=settings.inbound_max_size,
                reuse_port=reuse_port,
                apply_pending=apply_pending,
            )
            await server.start()
            typer.echo(
                f"inbound: listening on {host}:{server.port} for "
                f"{', '.join(sorted(receiver.domains))}",
                err=True,
            )
            try:
                await stop.wait()
            finally:
                await server.stop()

    try:
        asyncio.run(run())
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


#: a process that ends this many times within :data:`_RESTART_WINDOW` s stops them all
_RESTART_LIMIT = 4
_RESTART_WINDOW = 10.0


def _supervise(host: str, port: int, processes: int) -> None:
    """Fork ``processes`` servers sharing ``host:port`` (the kernel spreads connections
    over them), stop them all on SIGTERM/SIGINT, and start again one that ended — a
    report it had not answered 250 for is sent again by its MTA, so nothing is lost."""
    children: dict[int, int] = {}  # pid → index (index 0 applies pending bounces)
    stopping = False

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: one server, then _exit (never back into the parent's code)
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _serve(host, port, reuse_port=True, apply_pending=index == 0)
                code = 0
            except typer.Exit as exc:  # fail(): its message is printed already
                code = exc.exit_code
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logging.getLogger("notifier.inbound").exception("inbound process %d", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for index in range(processes):
        start(index)
    ended: list[float] = []
    failed: int | None = None
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        if stopping or index < 0:
            continue
        code = os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        ended = [t for t in ended if t > now - _RESTART_WINDOW] + [now]
        if len(ended) >= _RESTART_LIMIT:
            typer.echo(f"inbound: process {index} ended ({code}) again; stopping", err=True)
            failed = code or 1
            stop_all()
            continue
        typer.echo(f"inbound: process {index} (pid {pid}) ended ({code}); restarting", err=True)
        time.sleep(0.2)
        start(index)
    if failed is not None:
        raise typer.Exit(EXIT_RUNTIME)


def list_cmd(
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only reports that matched no message.")
    ] = False,
    limit: Annotated[int, typer.Option(metavar="N", min=1, help="At most N, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Reports received, newest first: kind, codes, the message they matched."""
    with _outbox() as outbox:
        records = outbox.reports(unmatched=unmatched, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    for r in records:
        target = f"message {r.message}" if r.message is not None else "unmatched"
        codes = " ".join(str(c) for c in (r.code, r.enhanced) if c) or "-"
        typer.echo(
            f"{r.id}\t{r.received_at:%Y-%m-%d %H:%M:%S}\t{r.kind}\t{codes}\t{target}\t"
            f"{r.outcome}\t{r.recipient or '-'}\t{r.sha256[:16]}"
        )


def register(app: typer.Typer) -> None:
    """Add the ``inbound`` group (the server itself runs when no sub-command is given)."""
    group = typer.Typer(
        help="Receive bounces and complaints (bounce domains' MX, or --stdin).",
        no_args_is_help=False,
        add_completion=False,
        rich_markup_mode=None,
        invoke_without_command=True,
    )
    group.callback()(inbound_main)
    command(group, "list")(list_cmd)
    app.add_typer(group, name="inbound")


__all__ = ["register"]
