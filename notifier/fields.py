"""Field types shared by the event catalog and the brand files.

Every string that can reach a mail header is a :data:`SafeStr`: CR, LF, NUL and the
Unicode line and paragraph separators are refused at intake (CVE-2024-6923 showed
that Python's email package can turn such a character into a raw header).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

import idna
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def check_safe(value: str) -> str:
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


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
