"""The ops CLI: a thin edge over the same pipeline the API uses.

Each module in :data:`COMMANDS` adds its commands with ``register(app)``; they share one
way to fail (:mod:`.common`): exit 2 for usage and validation errors, 1 for runtime
failures, 3 when DNS could not answer.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

#: Modules of this package with a ``register(app)``; adding one is adding its name here.
COMMANDS = (
    "render",
    "queue",
    "serve",
    "tokens",
    "dkim",
    "dns",
    "config",
    "webhooks",
    "inbound",
    "db",
)

app = typer.Typer(
    help="notifier: white-label transactional mail for domain resellers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def package_version() -> str:
    """The installed distribution's version (``pyproject.toml``)."""
    try:
        return version("notifier")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"notifier {package_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            expose_value=False,
            callback=_print_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """notifier: white-label transactional mail for domain resellers."""


for _name in COMMANDS:
    import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
