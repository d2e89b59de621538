"""How every command fails: one line per problem on stderr, and an exit code by kind.

The contract, the same for every command, so scripts can tell "fix your input" from
"try again later" without reading the text:

* **2** — usage or validation: a bad option, an invalid event or field (one
  ``error: <field>: <message>`` line per field), invalid settings (:class:`ConfigError`);
* **1** — a runtime failure: storage, delivery, a key store refusal, a template error;
* **3** — DNS could not answer (timeout, SERVFAIL, no resolver): try again later.

Commands are registered with :func:`command`, which reports any :class:`NotifierError`
they let escape, so an expected failure never ends in a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from ..errors import ConfigError, DNSCheckError, NotifierError, ValidationError

if TYPE_CHECKING:
    from ..compose.pipeline import Pipeline
    from ..config import Settings

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_DNS = 3

P = ParamSpec("P")
R = TypeVar("R")


def new_group(help: str) -> typer.Typer:
    """A sub-command group with the CLI's help style (plain text, no ``<str>`` types)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: ``MESSAGE_ID``, not ``{MESSAGE_ID} <int>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)

    def _usage_display_name(self) -> str:
        name = super()._usage_display_name()
        return name[1:-1] if self.required and name.startswith("{") else name


class Command(TyperCommand):
    """Every command's class: typer's, with the plain argument help of :class:`_Argument`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument


def fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def exit_code(exc: NotifierError) -> int:
    """The contract above, decided by the exception's class."""
    if isinstance(exc, ValidationError | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, DNSCheckError):
        return EXIT_DNS
    return EXIT_RUNTIME


def report(exc: NotifierError, code: int | None = None) -> NoReturn:
    """Print ``exc`` (a line per field for validation errors) and exit.

    ``code`` overrides the class's exit code, for steps whose every failure is a usage
    error (reading settings).
    """
    if isinstance(exc, ValidationError) and exc.errors:
        for err in exc.errors:
            typer.echo(f"error: {err.loc}: {err.message}", err=True)
        raise typer.Exit(exit_code(exc) if code is None else code)
    notes = getattr(exc, "__notes__", None) or []
    fail("; ".join([str(exc), *notes]), exit_code(exc) if code is None else code)


@contextmanager
def reporting(code: int | None = None) -> Iterator[None]:
    """Report a :class:`NotifierError` raised in the block (see :func:`report`)."""
    try:
        yield
    except NotifierError as exc:
        report(exc, code)


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` with its :class:`NotifierError` reported instead of raised."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except NotifierError as exc:
            report(exc)

    return wrapper


def command(
    group: typer.Typer, name: str, **options: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a function as command ``name`` of ``group``, behind :func:`handled`."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        group.command(name, cls=Command, **options)(handled(func))
        return func

    return decorate


def load_settings(ctx: typer.Context | None = None) -> Settings:
    """The settings a parent command put in the context, else ``Settings.load()``.

    Any failure here is the user's configuration: exit 2.
    """
    from ..config import Settings

    found = ctx.find_object(Settings) if ctx is not None else None
    if found is not None:
        return found
    try:
        return Settings.load()
    except NotifierError as exc:
        report(exc, EXIT_USAGE)


def open_pipeline(settings: Settings, *, stored_dns: bool = False) -> Pipeline:
    """The pipeline over ``settings``; its errors are reported by :func:`handled`.

    ``stored_dns``: decide senders by the brands' DNS state as the periodic checks
    recorded it, as the service does, so that what a command shows is what would be
    sent. With no database yet, or one that does not answer, the brand files decide
    (said on stderr in the second case)."""
    from ..compose.pipeline import Pipeline

    pipeline = Pipeline(settings)
    if stored_dns:
        pipeline.observe_dns(_stored_dns(settings))
    return pipeline


def _stored_dns(settings: Settings) -> dict[str, bool]:
    from ..dns.verify import DnsView
    from ..errors import StorageError
    from ..outbox import open_outbox

    url = settings.database
    if url.startswith("sqlite:"):
        from ..outbox.sqlite import path_from_url

        if not path_from_url(url).exists():
            return {}  # nothing checked yet: the brand files decide
    try:
        outbox = open_outbox(settings)
        try:
            view = DnsView(outbox)
            view.refresh()
            return dict(view.observed)
        finally:
            outbox.close()
    except StorageError as exc:
        typer.echo(f"warning: brand DNS states not read ({exc}); the brand files decide", err=True)
        return {}
