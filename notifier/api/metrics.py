"""Prometheus text exposition (format 0.0.4), written by hand: no client library.

Outbox figures come from the database at scrape time, so they are right whichever
process did the work and survive restarts: counters (accepted, sent, failed, …, and the
accept-to-sent latency histogram) that the outbox adds to in the same transaction as
the change they count — they never go down, not even when old messages are purged —
and the messages still waiting, by state. HTTP request counts are this process's own.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .store import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: upper bounds (seconds) of the HTTP request-duration histogram
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def histogram(
        self,
        name: str,
        buckets: Iterable[tuple[float, int]],
        total: float,
        count: int,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        base = dict(labels or {})
        seen_inf = False
        for bound, cumulative in buckets:
            seen_inf = seen_inf or bound == float("inf")
            self.sample(f"{name}_bucket", cumulative, {**base, "le": _number(bound)})
        if not seen_inf:
            self.sample(f"{name}_bucket", count, {**base, "le": "+Inf"})
        self.sample(f"{name}_sum", total, base)
        self.sample(f"{name}_count", count, base)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class HttpMetrics:
    """Request counts by method, route template and status; durations by route."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[str, list[float]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        counts = self.durations.setdefault(route, [0.0] * (len(HTTP_BUCKETS) + 1))
        for i, bound in enumerate(HTTP_BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[route] += seconds

    def write(self, w: Writer) -> None:
        w.family("notifier_http_requests_total", "counter", "HTTP requests by route and status.")
        for (method, route, status), n in sorted(self.requests.items()):
            w.sample(
                "notifier_http_requests_total",
                n,
                {"method": method, "route": route, "status": status},
            )
        w.family(
            "notifier_http_request_duration_seconds", "histogram", "Time to answer an HTTP request."
        )
        for route, counts in sorted(self.durations.items()):
            w.histogram(
                "notifier_http_request_duration_seconds",
                [(b, int(c)) for b, c in zip(HTTP_BUCKETS, counts, strict=False)],
                self.sums[route],
                int(counts[-1]),
                {"route": route},
            )
        w.family("notifier_process_start_time_seconds", "gauge", "When this process started.")
        w.sample("notifier_process_start_time_seconds", round(self.started, 3))


#: counters kept by the outbox → (metric, help)
COUNTERS = (
    (
        "accepted",
        "notifier_messages_accepted_total",
        "Events accepted into the outbox, by brand and event.",
    ),
    ("sent", "notifier_messages_sent_total", "Messages delivered (a 250 after the data)."),
    ("failed", "notifier_messages_failed_total", "Messages given up on."),
    (
        "suppressed",
        "notifier_messages_suppressed_total",
        "Messages not sent because the address is suppressed.",
    ),
    (
        "cancelled",
        "notifier_messages_cancelled_total",
        "Reminders cancelled before sending (the domain was renewed, deleted or moved).",
    ),
)


def write_stats(w: Writer, stats: Stats) -> None:
    for name, metric, text in COUNTERS:
        w.family(metric, "counter", text)
        for (brand, event, counted), n in sorted(stats.counters.items()):
            if counted == name:
                w.sample(metric, n, {"brand": brand, "event": event})
    w.family(
        "notifier_messages",
        "gauge",
        "Messages waiting in the outbox by brand, event and state "
        "(queued, sending, deferred, held).",
    )
    for (brand, event, status), n in sorted(stats.live.items()):
        w.sample("notifier_messages", n, {"brand": brand, "event": event, "status": status})
    w.family("notifier_messages_deferred", "gauge", "Messages waiting for another attempt.")
    for (brand, event, status), n in sorted(stats.live.items()):
        if status == "deferred":
            w.sample("notifier_messages_deferred", n, {"brand": brand, "event": event})
    w.family("notifier_suppressions", "gauge", "Suppressed addresses by brand and reason.")
    for (brand, reason), n in sorted(stats.suppressed.items()):
        w.sample("notifier_suppressions", n, {"brand": brand, "reason": reason})
    w.family("notifier_queue_depth", "gauge", "Messages due or waiting to be sent.")
    w.sample("notifier_queue_depth", stats.queue_depth)
    w.family(
        "notifier_accept_to_sent_seconds",
        "histogram",
        "Time from accepting an event to the 250 for its message.",
    )
    w.histogram(
        "notifier_accept_to_sent_seconds",
        stats.latency_buckets,
        stats.latency_sum,
        stats.latency_count,
    )


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
