"""The closing-the-loop figures in one object: ``inbound_reports_per_s`` (from
``feedback_inbound.py``: DSNs over SMTP into a real ``notifier inbound``, target ≥ 1,000/s)
and ``webhooks_per_s``, ``throughput_with_webhooks_msgs_per_s``,
``throughput_without_webhooks_msgs_per_s`` (from ``feedback_webhooks.py``: the workers'
dispatcher to a loopback receiver, target ≥ 1,000/s; end-to-end throughput with one
endpoint subscribed to every event at most 15 % below the same run without).

    .venv/bin/python bench/feedback.py [--json] [--database sqlite|postgres]

Each part runs as its own process (own temporary database, servers and workers), one
after the other, so that neither disturbs the other's timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / script), "--json", *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    figures = _run("feedback_inbound.py")
    figures.update(_run("feedback_webhooks.py", "--database", args.database))
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:<42} {value}")


if __name__ == "__main__":
    main()
