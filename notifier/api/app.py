"""The HTTP application: ``create_app(settings)``.

Routes: ``/v1/...`` (JSON API, bearer tokens), ``/preview`` (server-rendered pages
for resellers and ops), ``/u/{token}`` (one-click unsubscribe), ``/healthz``,
``/readyz``, ``/metrics``; OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from .. import heap
from ..brands import BrandRegistry
from ..compose.pipeline import Pipeline
from ..config import Settings
from ..errors import StorageError
from ..tokens import TokenStore
from . import contract, docs, errors, ops, preview, unsubscribe, v1, webhooks
from .limits import MAX_BATCH, BodyLimit
from .metrics import HttpMetrics, HttpMetricsMiddleware
from .store import Store, open_store

if TYPE_CHECKING:
    from ..outbox import OutboxConfig

log = logging.getLogger("notifier.api")

#: how long shutdown waits for the worker (or its processes) to finish the sends in flight
WORKER_STOP_SECONDS = 60

#: FastAPI's native OpenTelemetry (recent releases) asks on every request whether a
#: tracer is configured (environment lookups included): a few per cent of an accept's
#: CPU. notifier exports its own metrics (/metrics); the hooks stay off.
_NO_OPENTELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)

DESCRIPTION = """\
Transactional mail for the registry, billing and reseller systems.

Authenticate with `Authorization: Bearer nt_…` (`notifier token create`). Scopes:
`events:write`, `messages:read`, `admin`. A reseller token is bound to one brand and
sees nothing of any other. Errors are `{"error": CODE, "detail": …}`; a 422's detail
lists each field path (`data.expires_at`) with its problem.
"""


def body_limits(settings: Settings) -> Any:
    single = settings.max_event_bytes

    def limit_for(path: str) -> int:
        if path == "/v1/events/batch":
            return single * MAX_BATCH
        if path.startswith("/preview"):
            return single * 3 + 4096  # form-encoded JSON grows up to threefold
        if path.startswith("/u/"):
            return 4096
        return single

    return limit_for


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    tokens: TokenStore | None = None,
    pipeline: Pipeline | None = None,
    run_worker: bool = False,
    worker_processes: int = 0,
    warm_up: bool = False,
    outbox_config: OutboxConfig | None = None,
) -> FastAPI:
    """The ASGI app. ``store`` defaults to the outbox in ``settings.database``, with
    ``outbox_config`` (default: the ``NOTIFIER_*`` environment; it says how many intake
    processes render large batches); ``run_worker`` also runs the delivery worker: in
    ``worker_processes`` processes of their own (:mod:`notifier.worker.process`), or in
    this process when that is 0; ``warm_up`` compiles every template and starts the
    intake processes before the first request (``notifier serve`` does both)."""
    pipeline = pipeline or Pipeline(settings)
    store = store or open_store(settings, pipeline, outbox_config)
    tokens = tokens or TokenStore(store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_task: asyncio.Task[None] | None = None
        stop = asyncio.Event()
        try:
            await store.ping()  # opens the outbox and creates its schema
        except StorageError as exc:
            log.warning("the outbox is not reachable yet (%s); /readyz says so", exc)
        if warm_up:  # this process's templates, and the intake processes, side by side
            started = asyncio.create_task(asyncio.to_thread(store.start))
            await asyncio.to_thread(pipeline.warm_up)
            try:
                await started
            except StorageError as exc:
                log.warning("intake processes not started (%s)", exc)
        heap.settle()  # start-up's objects out of the collector's full passes
        if run_worker and worker_processes > 0:
            from ..worker.process import WorkerProcesses

            children = WorkerProcesses(
                settings,
                worker_processes,
                log_level=logging.getLogger().getEffectiveLevel(),
                grace=WORKER_STOP_SECONDS - 5,
            )
            worker_task = asyncio.create_task(children.run(stop))
        elif run_worker:
            worker_task = asyncio.create_task(_run_worker(settings, store, stop, pipeline.brands))
        try:
            yield
        finally:
            stop.set()
            if worker_task is not None:
                try:
                    await asyncio.wait_for(worker_task, timeout=WORKER_STOP_SECONDS)
                except TimeoutError:
                    log.error("the worker did not stop within %s s", WORKER_STOP_SECONDS)
                except Exception:
                    log.exception("worker stopped with an error")
            await store.close()

    app = FastAPI(
        title="notifier",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the installed bundle: see docs.py
        redoc_url=None,
        openapi_url="/openapi.json",
        **_NO_OPENTELEMETRY,
    )
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.tokens = tokens
    app.state.store = store
    app.state.http_metrics = HttpMetrics()
    app.state.catalog_json = v1.catalog_document()
    preview.setup(app, settings)

    errors.install(app)
    preview.install_sign_in_handler(app)
    app.include_router(v1.router, tags=["v1"])
    app.include_router(ops.router)
    app.include_router(webhooks.router)
    app.include_router(preview.router)
    app.include_router(unsubscribe.router)
    docs.install(app)
    app.openapi = lambda: contract.openapi(app)  # type: ignore[method-assign]

    app.add_middleware(BodyLimit, limit_for=body_limits(settings))
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.http_metrics)
    return app


async def _run_worker(
    settings: Settings, store: Store, stop: asyncio.Event, brands: BrandRegistry
) -> None:
    """The delivery worker beside the API (``notifier serve``), sharing its outbox.

    Waits for the database if it is down at start-up; on shutdown the worker stops
    claiming, finishes the sends in flight and releases the rest.
    """
    from ..delivery import transport_from_url
    from ..feedback.dispatcher import dispatcher_from_settings
    from ..worker.loop import Worker, make_signer

    outbox = None
    while outbox is None:
        try:
            outbox = await asyncio.to_thread(lambda: store.outbox)  # type: ignore[attr-defined]
        except StorageError as exc:
            log.warning("worker waiting for the outbox: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=5)
                return
            except TimeoutError:
                continue
    transport = transport_from_url(settings.smtp_url, settings.mail_dir)
    from ..dns.verify import Verifier

    worker = Worker(
        outbox,
        transport,
        make_signer(settings),
        config=settings.worker_config(),
        brands=brands,
        verifier=Verifier(settings, brands, outbox) if settings.dns_recheck else None,
        webhooks=dispatcher_from_settings(settings, outbox),
    )
    run = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        worker.stop()
        await run
    finally:
        stopper.cancel()
        await transport.close()
