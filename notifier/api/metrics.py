"""``/metrics`` through prometheus-client: custom collectors, one registry per scrape.

Outbox figures come from the database at scrape time, so they are right whichever
process did the work and survive restarts: counters (accepted, sent, failed, …, and the
accept-to-sent latency histogram) that the outbox adds to in the same transaction as
the change they count — they never go down, not even when old messages are purged —
and the messages still waiting, by state. HTTP request counts are this process's own,
kept per app (not in the library's global registry, so that apps in one process — the
tests — do not share them). The usual process, platform and GC metrics come with them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .store import Stats

#: the classic text format (prometheus-client writes it with legacy names, as here)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: upper bounds (seconds) of the HTTP request-duration histogram
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: the process-wide collectors prometheus-client keeps (none holds per-app state)
STANDARD: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


def _bound(value: float) -> str:
    """An ``le`` label as it has always been written: ``5``, ``0.25``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _buckets(bounds: Iterable[tuple[float, float]], count: float) -> list[tuple[str, float]]:
    """Cumulative ``(bound, count)`` pairs with the ``+Inf`` bucket the format needs."""
    out = [(_bound(b), float(c)) for b, c in bounds if b != float("inf")]
    out.append(("+Inf", float(count)))
    return out


class HttpMetrics(Collector):
    """Request counts by method, route template and status; durations by route."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        counts = self.durations.setdefault(route, [0] * (len(HTTP_BUCKETS) + 1))
        for i, bound in enumerate(HTTP_BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[route] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "notifier_http_requests",
            "HTTP requests by route and status.",
            labels=("method", "route", "status"),
        )
        for (method, route, status), n in sorted(self.requests.items()):
            requests.add_metric((method, route, status), n)
        yield requests
        durations = HistogramMetricFamily(
            "notifier_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels=("route",),
        )
        for route, counts in sorted(self.durations.items()):
            durations.add_metric(
                (route,),
                _buckets(zip(HTTP_BUCKETS, counts, strict=False), counts[-1]),
                self.sums[route],
            )
        yield durations
        yield GaugeMetricFamily(
            "notifier_process_start_time_seconds",
            "When this process started.",
            value=round(self.started, 3),
        )


#: counters kept by the outbox → (metric, help)
COUNTERS = (
    (
        "accepted",
        "notifier_messages_accepted",
        "Events accepted into the outbox, by brand and event.",
    ),
    ("sent", "notifier_messages_sent", "Messages delivered (a 250 after the data)."),
    ("failed", "notifier_messages_failed", "Messages given up on."),
    (
        "suppressed",
        "notifier_messages_suppressed",
        "Messages not sent because the address is suppressed.",
    ),
    (
        "cancelled",
        "notifier_messages_cancelled",
        "Reminders cancelled before sending (the domain was renewed, deleted or moved).",
    ),
    ("bounced", "notifier_messages_bounced", "Hard bounces (5.x.x) received for sent mail."),
    ("soft_bounced", "notifier_messages_soft_bounced", "Soft bounces (4.x.x DSNs) received."),
    ("complained", "notifier_messages_complained", "Complaints (ARF) received."),
)


class OutboxCollector(Collector):
    """The outbox's figures as read for one scrape; ``stats`` is None when the
    database did not answer (then only ``notifier_outbox_up 0``)."""

    def __init__(self, stats: Stats | None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "notifier_outbox_up",
            "1 when the outbox database answered this scrape.",
            value=0 if self.stats is None else 1,
        )
        if self.stats is not None:
            yield from _outbox_families(self.stats)


def _outbox_families(stats: Stats) -> Iterator[Metric]:
    for name, metric, text in COUNTERS:
        family = CounterMetricFamily(metric, text, labels=("brand", "event"))
        for (brand, event, counted), n in sorted(stats.counters.items()):
            if counted == name:
                family.add_metric((brand, event), n)
        yield family
    live = GaugeMetricFamily(
        "notifier_messages",
        "Messages waiting in the outbox by brand, event and state "
        "(queued, sending, deferred, held).",
        labels=("brand", "event", "status"),
    )
    deferred = GaugeMetricFamily(
        "notifier_messages_deferred",
        "Messages waiting for another attempt.",
        labels=("brand", "event"),
    )
    for (brand, event, status), n in sorted(stats.live.items()):
        live.add_metric((brand, event, status), n)
        if status == "deferred":
            deferred.add_metric((brand, event), n)
    yield live
    yield deferred
    suppressions = GaugeMetricFamily(
        "notifier_suppressions",
        "Suppressed addresses by brand and reason.",
        labels=("brand", "reason"),
    )
    for (brand, reason), n in sorted(stats.suppressed.items()):
        suppressions.add_metric((brand, reason), n)
    yield suppressions
    yield GaugeMetricFamily(
        "notifier_queue_depth", "Messages due or waiting to be sent.", value=stats.queue_depth
    )
    yield from _dns_families(stats)
    latency = HistogramMetricFamily(
        "notifier_accept_to_sent_seconds",
        "Time from accepting an event to the 250 for its message.",
    )
    latency.add_metric((), _buckets(stats.latency_buckets, stats.latency_count), stats.latency_sum)
    yield latency
    yield from _inbound_families(stats)


def _inbound_families(stats: Stats) -> Iterator[Metric]:
    """``notifier inbound``: reports by kind, forged and unmatched ones."""
    kinds: dict[str, float] = defaultdict(float)
    forged: float = 0.0
    unmatched: float = 0.0
    for (_, _, name), n in stats.counters.items():
        if name == "report_forged":
            forged += n
        elif name == "report_unmatched":
            unmatched += n
        elif name.startswith("report_"):
            kinds[name.removeprefix("report_")] += n
    reports = CounterMetricFamily(
        "notifier_inbound_reports", "Inbound reports stored, by kind.", labels=("kind",)
    )
    for kind, total in sorted(kinds.items()):
        reports.add_metric((kind,), total)
    yield reports
    yield CounterMetricFamily(
        "notifier_inbound_forged",
        "Reports to a VERP address whose MAC did not verify (dropped).",
        value=forged,
    )
    yield CounterMetricFamily(
        "notifier_inbound_unmatched", "Reports that matched no message (kept).", value=unmatched
    )


#: the brand DNS states (notifier.outbox.brand_dns), one gauge series each
DNS_STATES = ("unverified", "verified", "broken-pending")


def _dns_families(stats: Stats) -> Iterator[Metric]:
    """Each checked brand's DNS state (1 for the state it is in, 0 for the others) and
    the transitions between states."""
    state = GaugeMetricFamily(
        "notifier_brand_dns_state",
        "Observed DNS state of each checked brand (1: the state it is in).",
        labels=("brand", "state"),
    )
    for brand, current in sorted(stats.dns_states.items()):
        for name in DNS_STATES:
            state.add_metric((brand, name), 1 if name == current else 0)
    yield state
    moves = CounterMetricFamily(
        "notifier_brand_dns_transitions",
        "Brand DNS state changes recorded by the checks.",
        labels=("brand", "from", "to"),
    )
    for (brand, before, after), n in sorted(stats.dns_transitions.items()):
        moves.add_metric((brand, before, after), n)
    yield moves


def exposition(stats: Stats | None, http: HttpMetrics, *extra: Collector) -> bytes:
    """One scrape: the outbox's figures, this app's HTTP metrics and the process's
    (and ``extra`` collectors: the webhook endpoints)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (OutboxCollector(stats), http, *extra, *STANDARD):
        registry.register(collector)
    return generate_latest(registry)


class HttpMetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - start)
