"""``notifier config``: the effective settings, where each came from, secrets hidden."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings, load_with_sources, redacted
from .common import EXIT_USAGE, command, reporting


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", metavar="PATH", help="Settings file [default: NOTIFIER_CONFIG, notifier.toml]"
        ),
    ] = None,
) -> None:
    """Show every setting's effective value and where it came from (secrets hidden)."""
    with reporting(EXIT_USAGE):
        settings, sources = load_with_sources(config=file)
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append(
            {
                "name": name,
                "env": f"NOTIFIER_{name.upper()}",
                "value": _plain(redacted(name, getattr(settings, name))),
                "source": sources.get(name, "default"),
                "description": field.description or "",
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        typer.echo(f"{r['name'].ljust(width)}  {shown}  [{r['source']}]")


def register(app: typer.Typer) -> None:
    command(app, "config")(config_cmd)


__all__ = ["register"]
