"""One exception tree for notifier.

Every error the package raises on purpose derives from :class:`NotifierError`;
third-party exceptions are translated at the boundary that calls the library
(``raise ... from exc``) so callers never need to import jinja2, pydantic,
dkim or aiosmtplib to handle a failure::

    NotifierError
    ├── ConfigError            settings or a brand file are invalid
    │   └── BrandError         brands/<id>.toml (names the file and field)
    ├── ValidationError        bad input: unknown event, missing/mistyped field
    │   ├── UnknownEvent
    │   ├── UnknownBrand
    │   └── UnsupportedLanguage
    ├── RenderError            a template failed (undefined variable, syntax, limits)
    │   ├── TemplateNotFound
    │   └── PlatformLeak       reseller mail would mention the platform
    ├── HeaderInjection        CR/LF/NUL reached a header-bound value
    ├── InternalError          an unexpected exception (a bug) while preparing one event
    ├── KeyStoreError          DKIM key missing, unreadable or would be overwritten
    ├── SigningError           DKIM signing failed
    ├── DNSCheckError          DNS check could not run
    ├── StorageError           the outbox database failed (maps to HTTP 503)
    │   └── Conflict           idempotency key reused with another body (HTTP 409)
    └── DeliveryError          an SMTP attempt failed
        ├── TransientDeliveryError   4xx, timeouts, connection errors: retry
        └── PermanentDeliveryError   5xx: give up
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class NotifierError(Exception):
    """Base of every error notifier raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by state, not by calling ``__init__`` again: subclasses take other
        # arguments than ``args`` holds (intake renders in worker processes, whose
        # errors — ValidationError with its field list, notes included — come back here).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class ConfigError(NotifierError):
    """Settings are invalid."""


class BrandError(ConfigError):
    """A brand file is invalid; ``path`` and ``field`` say where."""

    def __init__(self, path: str, field: str, message: str) -> None:
        self.path = path
        self.field = field
        super().__init__(f"{path}: {field}: {message}")


def printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (unpaired surrogates) escaped."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class FieldError:
    """One invalid field: a dotted path (``data.expires_at``) and a message."""

    __slots__ = ("loc", "message")

    def __init__(self, loc: str, message: str) -> None:
        # both may echo the input (a field name, a value): keep them encodable, so that
        # the answer naming the problem never fails to be sent
        self.loc = printable(loc)
        self.message = printable(message)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.loc, "message": self.message}

    def __repr__(self) -> str:
        return f"FieldError({self.loc!r}, {self.message!r})"


class ValidationError(NotifierError):
    """Input is invalid; ``errors`` lists each field path and what is wrong."""

    def __init__(self, errors: Sequence[FieldError], message: str | None = None) -> None:
        self.errors = list(errors)
        if message is None:
            message = "; ".join(f"{e.loc}: {e.message}" for e in self.errors)
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        return {"error": "validation_error", "detail": [e.as_dict() for e in self.errors]}


#: where FastAPI says a request value came from (the first item of its ``loc``)
_REQUEST_PARTS = ("body", "query", "path", "header", "cookie")


def field_path(loc: Iterable[int | str], prefix: str = "") -> str:
    """``("data", "items", 0, "price")`` → ``data.items[0].price`` (after ``prefix``)."""
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


def from_pydantic(
    errors: Iterable[Mapping[str, Any]], prefix: str = "", *, request: bool = False
) -> ValidationError:
    """pydantic's error dicts (``exc.errors()``) → our :class:`ValidationError`, each
    with a dotted field path under ``prefix`` and a short message. The one translator,
    so that the pipeline and the HTTP layer name fields alike; ``request`` drops the
    leading part FastAPI adds (``body``, ``query``, …). Takes plain dicts so that this
    module needs no pydantic."""
    out = []
    for err in errors:
        loc = [
            p
            for p in err.get("loc", ())
            if not (isinstance(p, str) and p.startswith("function-"))  # validator wrappers
        ]
        if request and loc and loc[0] in _REQUEST_PARTS:
            loc = loc[1:]
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "missing":
            msg = "field required"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        out.append(FieldError(field_path(loc, prefix), msg))
    return ValidationError(out)


class UnknownEvent(ValidationError):
    def __init__(self, name: str, known: Sequence[str], loc: str = "event") -> None:
        self.name = name
        self.known = list(known)
        super().__init__(
            [FieldError(loc, f"unknown event {name!r}; known events: {', '.join(known)}")]
        )


class UnknownBrand(ValidationError):
    def __init__(self, brand_id: str, known: Sequence[str], loc: str = "brand") -> None:
        self.brand_id = brand_id
        super().__init__(
            [FieldError(loc, f"unknown brand {brand_id!r}; known brands: {', '.join(known)}")]
        )


class UnsupportedLanguage(ValidationError):
    def __init__(self, lang: str, supported: Sequence[str], loc: str = "language") -> None:
        super().__init__(
            [FieldError(loc, f"unsupported language {lang!r}; supported: {', '.join(supported)}")]
        )


class RenderError(NotifierError):
    """A template could not be rendered."""


class TemplateNotFound(RenderError):
    pass


class PlatformLeak(RenderError):
    """Reseller-branded mail would show the platform's name or host."""


class HeaderInjection(NotifierError):
    """A header-bound value carried CR, LF, NUL or a Unicode line separator."""


class InternalError(NotifierError):
    """An unexpected exception while preparing one event: a bug, answered 500 for that
    event (or its batch item) alone. Carries the original's type and traceback as text,
    since it may come back from an intake worker process."""

    def __init__(self, message: str, *, loc: str = "", trace: str = "") -> None:
        self.loc = loc
        self.trace = trace
        super().__init__(message)

    @classmethod
    def of(cls, exc: BaseException, loc: str = "") -> InternalError:
        trace = "".join(traceback.format_exception(exc))
        where = f" in {loc}" if loc else ""
        return cls(f"unexpected {type(exc).__name__}{where}", loc=loc, trace=trace)


class KeyStoreError(NotifierError):
    pass


class SigningError(NotifierError):
    pass


class DNSCheckError(NotifierError):
    pass


class StorageError(NotifierError):
    """The outbox could not be read or written; nothing was half-written."""


class Conflict(StorageError):
    pass


class DeliveryError(NotifierError):
    """An SMTP attempt failed."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        host: str | None = None,
    ) -> None:
        self.code = code
        self.enhanced = enhanced
        self.host = host
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass
