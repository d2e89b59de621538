"""Field types shared by the event catalog and the brand files, and the intake's rules
for a decoded JSON body.

Every string that can reach a mail header is a :data:`SafeStr`: CR, LF, NUL and the
Unicode line and paragraph separators are refused at intake (CVE-2024-6923 showed
that Python's email package can turn such a character into a raw header).

Every string the service accepts at all must be text that UTF-8 can encode: JSON's
``"\\ud800"`` decodes to an unpaired surrogate, which passes most validation and then
fails deep inside rendering, hashing or storage. :func:`decode_json` and
:func:`check_tree` are the boundary: every door (the API, the preview, the CLI, and
:meth:`~notifier.compose.pipeline.Pipeline.validate` behind them all) checks the whole
decoded tree once, so no field can forget to.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

import idna
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .errors import FieldError, field_path

_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(value: str) -> str | None:
    """Why ``value`` is not text UTF-8 can encode (an unpaired surrogate), or None."""
    if value.isascii():
        return None
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return (
        f"must be valid Unicode text: unpaired surrogate U+{ord(found.group()):04X} "
        f"at character {found.start()}"
    )


def check_safe(value: str) -> str:
    problem = unicode_problem(value)
    if problem:
        raise ValueError(problem)
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


class LongNumber:
    """Stands in for a JSON integer too long for Python to convert (over
    ``sys.get_int_max_str_digits()`` digits), so that :func:`check_tree` can name its
    field instead of the decoder failing the whole body."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"LongNumber({self.digits} digits)"


def _parse_int(text: str) -> int | LongNumber:
    digits = len(text.lstrip("-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        return LongNumber(digits)
    return int(text)


def decode_json(data: str | bytes) -> Any:
    """JSON → Python for intake. Raises ``ValueError`` (``json.JSONDecodeError``) for
    text that is not JSON, ``RecursionError`` for nesting too deep; an integer too long
    to convert comes back as a :class:`LongNumber`. Pass the result to
    :func:`check_tree` (the pipeline does) before using it."""
    return json.loads(data, parse_int=_parse_int)


def _clean(value: Any) -> bool:
    """The common case, fast: nothing in the tree that :func:`check_tree` would name
    (no paths built; exact types first, as :func:`json.loads` makes them)."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str:
            if not node.isascii() and _SURROGATE.search(node):
                return False
        elif kind is dict:
            for key in node:
                if type(key) is not str or not key.isascii():
                    return False  # rare: the careful walk decides
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is float:
            if not math.isfinite(node):
                return False
        elif kind not in (int, bool, type(None)):
            return False
    return True


def check_tree(value: Any, prefix: str = "") -> list[FieldError]:
    """Every problem of a decoded JSON tree that no field type should have to think
    about, each with its field path under ``prefix``: a string or key that is not valid
    Unicode, an integer too long to convert, a number that is not finite (``NaN``,
    ``1e999``). Iterative, so a tree as deep as the decoder allows is no problem."""
    if _clean(value):
        return []
    problems: list[FieldError] = []
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, str):
            problem = unicode_problem(node)
            if problem:
                problems.append(FieldError(field_path(loc, prefix), problem))
        elif isinstance(node, Mapping):
            for key, item in node.items():
                key_problem = unicode_problem(key) if isinstance(key, str) else None
                if key_problem:
                    name = key.encode("utf-8", "backslashreplace").decode("utf-8")
                    problems.append(
                        FieldError(field_path((*loc, name), prefix), f"field name {key_problem}")
                    )
                else:
                    stack.append((item, (*loc, key)))
        elif isinstance(node, list | tuple):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node))
        elif isinstance(node, LongNumber):
            limit = sys.get_int_max_str_digits()
            problems.append(
                FieldError(
                    field_path(loc, prefix),
                    f"number too long: {node.digits} digits, at most {limit}",
                )
            )
        elif isinstance(node, float) and not math.isfinite(node):
            problems.append(FieldError(field_path(loc, prefix), "must be a finite number"))
    problems.sort(key=lambda e: e.loc)
    return problems


SafeStr = Annotated[str, AfterValidator(check_safe)]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


_PLAIN_DOMAIN = re.compile(
    r"^(?:(?!-)(?!xn--)[a-z0-9-]{1,63}(?<!-)\.)+(?!xn--)[a-z0-9-]{2,63}(?<!-)$"
)


@lru_cache(maxsize=4096)
def domain_to_ascii(value: str) -> str:
    """Lower-cased A-label form (``xn--nekoski-...``) of a domain, validated."""
    value = value.strip().rstrip(".").lower()
    if not value or len(value) > 253:
        raise ValueError("not a domain name")
    if _PLAIN_DOMAIN.match(value):  # plain LDH labels, no A-labels: nothing for IDNA to do
        return value
    try:
        ascii_form = idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"not a valid domain name: {exc}") from exc
    labels = ascii_form.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("not a valid domain name")
    return ascii_form


@lru_cache(maxsize=4096)
def domain_to_unicode(ascii_form: str) -> str:
    if "xn--" not in ascii_form:
        return ascii_form
    try:
        return idna.decode(ascii_form)
    except (idna.IDNAError, UnicodeError):
        return ascii_form


def _domain(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    check_safe(value)
    return domain_to_unicode(domain_to_ascii(value))


#: A domain name, stored in Unicode form (``äänekoski.fi``) for display; headers use
#: :func:`domain_to_ascii`.
DomainName = Annotated[str, BeforeValidator(_domain)]

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[^@\s]+$")


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    check_safe(value)
    value = value.strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("not a valid e-mail address")
    local, _, domain = value.rpartition("@")
    if local.startswith(".") or local.endswith(".") or ".." in local or len(local) > 64:
        raise ValueError("not a valid e-mail address")
    return f"{local}@{domain_to_ascii(domain)}"


#: An e-mail address with an ASCII local part; the domain is stored in A-label form.
Email = Annotated[str, BeforeValidator(_email)]


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    check_safe(value)
    if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value, re.IGNORECASE):
        raise ValueError("must be an http(s) URL")
    if any(c in value for c in "\"'<> "):
        raise ValueError("must not contain quotes, spaces or angle brackets")
    return value


HttpUrl = Annotated[str, BeforeValidator(_url)]


def decimal_value(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError("must be a decimal number") from exc
    if not result.is_finite():
        raise ValueError("must be a finite number")
    return result


class Money(BaseModel):
    """An amount of money: ``{"amount": "12.50", "currency": "EUR"}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    amount: Annotated[Decimal, BeforeValidator(decimal_value)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
