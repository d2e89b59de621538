"""Locale-aware formatting with Babel: dates and times in the brand's time zone,
money, numbers and plural forms. One :class:`Formatter` per (language, time zone,
locale), built once with its patterns pre-parsed, so the hot path only applies them.

The locale is the brand's for the language (``sv-FI`` writes "kl. 9.30", ``sv-SE``
"kl. 09:30"). What mail shows comes from :meth:`Formatter.day`, :meth:`Formatter.moment`
and :meth:`Formatter.clock`: no-break spaces inside a date, and every time of day with
its zone in the reader's language ("klo 9.30 Suomen aikaa").
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
_AT_WORD = {"fi": "klo", "sv": "kl.", "en": "at"}
NBSP = "\u00a0"

#: a time zone as a reader names it after a time of day: "klo 9.30 Suomen aikaa"
ZONE_NAMES: dict[str, dict[str, str]] = {
    "Europe/Helsinki": {"fi": "Suomen aikaa", "sv": "finsk tid", "en": "Finnish time"},
    "Europe/Mariehamn": {"fi": "Suomen aikaa", "sv": "finsk tid", "en": "Finnish time"},
    "Europe/Stockholm": {"fi": "Ruotsin aikaa", "sv": "svensk tid", "en": "Swedish time"},
    "Europe/Oslo": {"fi": "Norjan aikaa", "sv": "norsk tid", "en": "Norwegian time"},
    "Europe/Copenhagen": {"fi": "Tanskan aikaa", "sv": "dansk tid", "en": "Danish time"},
    "Europe/Tallinn": {"fi": "Viron aikaa", "sv": "estnisk tid", "en": "Estonian time"},
    "Atlantic/Reykjavik": {"fi": "Islannin aikaa", "sv": "isländsk tid", "en": "Icelandic time"},
    "Europe/London": {"fi": "Britannian aikaa", "sv": "brittisk tid", "en": "UK time"},
    "UTC": {"fi": "UTC-aikaa", "sv": "UTC", "en": "UTC"},
}


def zone_name(tz: str, lang: str, locale: Locale) -> str:
    """The zone's name for a reader of ``lang``; outside the table, CLDR's exemplar
    ("(Japan Time)")."""
    known = ZONE_NAMES.get(tz, {}).get(lang)
    if known:
        return known
    from babel.dates import get_timezone_location

    return f"({get_timezone_location(tz, locale=locale)})"


def locale_tag(lang: str, tag: str | None = None) -> str:
    """``sv-FI`` / ``sv_FI`` → ``sv_FI``; none → the language's default locale."""
    return (tag or _LOCALES.get(lang, lang)).replace("-", "_")


class Formatter:
    def __init__(self, lang: str, tz: ZoneInfo, locale: str | None = None) -> None:
        self.lang = lang
        # International English for a Nordic audience: "26 December 2026", "€12.50"
        self.locale = Locale.parse(locale_tag(lang, locale))
        self.tz = tz
        self.zone = zone_name(str(tz.key), lang, self.locale)
        self._at = f" {_AT_WORD.get(lang, '')}{NBSP}" if lang in _AT_WORD else " "
        self._zone = NBSP + self.zone.replace(" ", NBSP)
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

    # --- what mail shows: unbreakable dates, times with their zone -------------------

    def day(self, value: dt.datetime | dt.date) -> str:
        """A date that never breaks across lines: ``26.\u00a0joulukuuta\u00a02026``."""
        return self.date(value).replace(" ", NBSP)

    def moment(self, value: dt.datetime) -> str:
        """Date, time and zone: ``26.\u00a0marraskuuta\u00a02026 klo\u00a09.30\u00a0Suomen
        aikaa``; a date alone stays a date."""
        local = self._local(value)
        if not isinstance(local, dt.datetime):
            return self.day(local)
        return _moment(self, local)

    def clock(self, value: dt.datetime | dt.time) -> str:
        """A time of day with its zone: ``9.30\u00a0Suomen aikaa``."""
        return self.time(value) + self._zone

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
def _moment(fmt: Formatter, local: dt.datetime) -> str:
    """Deadlines repeat in a batch (every notice of a run has the same few): once each."""
    day = _day(fmt, local.date(), False).replace(" ", NBSP)
    return day + fmt._at + str(fmt._time.apply(local, fmt.locale)) + fmt._zone


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
def formatter(lang: str, tz: str, locale: str | None = None) -> Formatter:
    return Formatter(lang, ZoneInfo(tz), locale)
