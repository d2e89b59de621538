"""Locale-aware formatting with Babel: dates and times in the brand's time zone,
money, numbers and plural forms. One :class:`Formatter` per (language, time zone),
built once with its patterns pre-parsed, so the hot path only applies them.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import parse_pattern
from babel.numbers import format_currency, format_decimal, format_percent

from .fields import Money

_LOCALES = {"en": "en_GB"}

#: how a date and a time of day are joined ("26. joulukuuta 2026 klo 16.30")
_AT = {"fi": "{1} 'klo' {0}", "sv": "{1} 'kl'. {0}", "en": "{1} 'at' {0}"}


class Formatter:
    def __init__(self, lang: str, tz: ZoneInfo) -> None:
        self.lang = lang
        # International English for a Nordic audience: "26 December 2026", "€12.50"
        self.locale = Locale.parse(_LOCALES.get(lang, lang))
        self.tz = tz
        date_long = self.locale.date_formats["long"].pattern
        date_short = self.locale.date_formats["short"].pattern
        time_short = self.locale.time_formats["short"].pattern
        joiner = _AT.get(lang, "{1} {0}")
        self._date = parse_pattern(date_long)
        self._date_short = parse_pattern(date_short)
        self._time = parse_pattern(time_short)
        self._datetime = parse_pattern(joiner.replace("{1}", date_long).replace("{0}", time_short))
        self._month = parse_pattern("LLLL y")

    def _local(self, value: datetime | date) -> datetime | date:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            return value.astimezone(self.tz)
        return value

    def date(self, value: datetime | date, short: bool = False) -> str:
        local = self._local(value)
        return _day(self, local.date() if isinstance(local, dt.datetime) else local, short)

    def datetime(self, value: dt.datetime) -> str:
        local = self._local(value)
        if not isinstance(local, dt.datetime):
            return self.date(local)
        return str(self._datetime.apply(local, self.locale))

    def time(self, value: dt.datetime | time) -> str:
        local = self._local(value) if isinstance(value, dt.datetime) else value
        return str(self._time.apply(local, self.locale))

    def month(self, period: str) -> str:
        """``2026-10`` → ``lokakuu 2026`` / ``oktober 2026`` / ``October 2026``."""
        year, month = period.split("-")
        return str(self._month.apply(date(int(year), int(month), 1), self.locale))

    def money(self, value: Money | Decimal | int | float, currency: str = "EUR") -> str:
        if isinstance(value, Money):
            return _money(value.amount, value.currency, self.locale)
        return _money(Decimal(str(value)), currency, self.locale)

    def number(self, value: Decimal | int | float) -> str:
        if isinstance(value, int) and -1000 < value < 1000:  # counts of days, years, items
            return _small_int(value, self.locale)
        return str(format_decimal(value, locale=self.locale))

    def percent(self, value: Decimal | int | float) -> str:
        """``12.5`` (a percentage) → ``12,5 %``."""
        return str(
            format_percent(
                Decimal(str(value)) / 100, locale=self.locale, decimal_quantization=False
            )
        )

    def plural(self, count: int, one: str, other: str) -> str:
        """``1 päivä`` / ``2 päivää``: the number, formatted, and the right form."""
        form = one if self._plural_form(count) == "one" else other
        return f"{self.number(count)} {form}"

    def _plural_form(self, count: int) -> str:
        # exact ints only: CLDR rules see visible decimals (en: 1 is "one", 1.0 "other"),
        # which a cache key would lose; and a bool is no count
        if type(count) is int:
            return _int_plural_form(self, count)
        return str(self.locale.plural_form(count))

    def join(self, items: list[Any], conjunction: str | None = None) -> str:
        """``a, b ja c`` / ``a, b och c`` / ``a, b, and c``."""
        from babel.lists import format_list

        return str(format_list([str(i) for i in items], locale=self.locale))


@lru_cache(maxsize=8192)
def _day(fmt: Formatter, day: date, short: bool) -> str:
    """A nightly batch has a handful of distinct days: format each once."""
    pattern = fmt._date_short if short else fmt._date
    return str(pattern.apply(day, fmt.locale))


@lru_cache(maxsize=8192)
def _int_plural_form(fmt: Formatter, count: int) -> str:
    """Babel evaluates the CLDR rule in Python (~1 µs) and a message asks ~5 times for
    the same few counts (days left, years)."""
    return str(fmt.locale.plural_form(count))


@lru_cache(maxsize=8192)
def _small_int(value: int, locale: Locale) -> str:
    return str(format_decimal(value, locale=locale))


@lru_cache(maxsize=4096)
def _money(amount: Decimal, currency: str, locale: Locale) -> str:
    """Prices repeat (every .fi renewal costs the same): format each once."""
    return str(format_currency(amount, currency, locale=locale))


@lru_cache(maxsize=64)
def formatter(lang: str, tz: str) -> Formatter:
    return Formatter(lang, ZoneInfo(tz))
