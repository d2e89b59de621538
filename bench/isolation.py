"""The cost of rendering a brand override in a worker process, per message.

Renders the one shipped override (kustwebb, sv, domain.renewal_reminder) in the
sandbox in this process, through the worker pool (as an override its source does not
prove bounded renders), and as the service renders it (proved bounded: in-process,
see ``notifier/compose/render/static.py``), and a stock template for reference.
Usage: ``python bench/isolation.py [--n 500] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Renderer, sample_event
from notifier.config import Settings


def per_render(renderer: Renderer, brand: str, n: int) -> float:
    event = sample_event("domain.renewal_reminder", brand, "sv")
    for _ in range(20):  # compile, start workers
        renderer.render(event)
    start = time.perf_counter()
    for _ in range(n):
        renderer.render(event)
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = Settings.load()
    brands = Pipeline(settings).brands
    service = Renderer(settings.templates_dir, brands)
    isolated = Renderer(settings.templates_dir, brands, prove=False)
    inline = Renderer(settings.templates_dir, brands, isolate=False)
    r = {
        "stock_ms": statistics.median(
            per_render(isolated, "acme", args.n) for _ in range(args.rounds)
        ),
        "override_in_process_ms": statistics.median(
            per_render(inline, "kustwebb", args.n) for _ in range(args.rounds)
        ),
        "override_isolated_ms": statistics.median(
            per_render(isolated, "kustwebb", args.n) for _ in range(args.rounds)
        ),
        "override_as_served_ms": statistics.median(
            per_render(service, "kustwebb", args.n) for _ in range(args.rounds)
        ),
    }
    r = {k: round(v, 4) for k, v in r.items()}
    r["isolation_cost_ms"] = round(r["override_isolated_ms"] - r["override_in_process_ms"], 4)
    print(json.dumps(r) if args.json else "\n".join(f"{k}: {v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
