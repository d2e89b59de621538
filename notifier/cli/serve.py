"""``notifier serve``: the HTTP API, the preview pages and the delivery worker.

uvicorn runs one event loop for the API and the pages; the worker runs in a process of
its own beside it (``--worker-processes``, :mod:`notifier.worker.process`), or in the
same loop with ``--worker-processes 0``. Settings are read here, once, so a bad
``NOTIFIER_*`` value is a message at start-up and not a traceback later.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Annotated

import typer

from .common import EXIT_USAGE, command, load_settings, reporting


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8025,
    worker: Annotated[bool, typer.Option(help="Also run the delivery worker.")] = True,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="debug, info, warning or error.")
    ] = "info",
    worker_processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Delivery workers in processes of their own; 0: one worker in this process "
            "[default: NOTIFIER_WORKER_PROCESSES, else 1].",
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    intake_processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Processes that validate and render large batches; 0: in this process "
            "[default: NOTIFIER_INTAKE_PROCESSES, else one per core].",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API, the preview pages and (by default) the delivery worker."""
    import uvicorn

    from ..api import create_app
    from ..api.server import limits

    settings = load_settings(ctx)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with reporting(EXIT_USAGE):
        # read here, once: a bad value is a message now, not a traceback later
        outbox_config = dataclasses.replace(
            settings.outbox_config(),
            # serve's default: one per core
            intake_processes=intake_processes
            if intake_processes is not None
            else settings.intake_process_count(default="auto"),
        )
    app = create_app(
        settings,
        run_worker=worker,
        worker_processes=worker_processes
        if worker_processes is not None
        else settings.worker_processes,
        warm_up=True,
        outbox_config=outbox_config,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=access_log,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=30,
        # slow and many clients: deadlines for each request, a cap on connections
        http=limits(
            settings.http_header_timeout,
            settings.http_body_timeout,
            settings.http_max_connections,
        ),
        timeout_keep_alive=max(1, round(settings.http_keep_alive)),
    )
    uvicorn.Server(config).run()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the main CLI."""
    command(app, "serve")(serve)


__all__ = ["register"]
