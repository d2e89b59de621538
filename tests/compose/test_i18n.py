from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from notifier.fields import Money
from notifier.i18n import formatter

NBSP = "\xa0"
WHEN = datetime(2026, 12, 26, 22, 30, tzinfo=UTC)  # 00:30 next day in Helsinki


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("fi", f"12,50{NBSP}€"), ("sv", f"12,50{NBSP}€"), ("en", "€12.50")],
)
def test_money(lang: str, expected: str) -> None:
    assert formatter(lang, "Europe/Helsinki").money(Money(amount=Decimal("12.5"))) == expected


@pytest.mark.parametrize(
    ("lang", "one", "two"),
    [("fi", "1 päivä", "2 päivää"), ("sv", "1 dag", "2 dagar"), ("en", "1 day", "2 days")],
)
def test_plural(lang: str, one: str, two: str) -> None:
    f = formatter(lang, "Europe/Helsinki")
    forms = {"fi": ("päivä", "päivää"), "sv": ("dag", "dagar"), "en": ("day", "days")}[lang]
    assert f.plural(1, *forms) == one
    assert f.plural(2, *forms) == two


def test_dates_use_the_brand_time_zone() -> None:
    assert formatter("fi", "Europe/Helsinki").date(WHEN) == "27. joulukuuta 2026"
    assert formatter("en", "UTC").date(WHEN) == "26 December 2026"
    assert formatter("en", "UTC").datetime(WHEN) == "26 December 2026 at 22:30"
    assert formatter("sv", "Europe/Stockholm").datetime(WHEN) == "26 december 2026 kl. 23:30"
    assert formatter("fi", "Europe/Helsinki").datetime(WHEN) == "27. joulukuuta 2026 klo 0.30"


def test_plain_dates_and_months() -> None:
    assert formatter("sv", "Europe/Helsinki").date(date(2026, 12, 10)) == "10 december 2026"
    assert formatter("fi", "Europe/Helsinki").month("2026-10") == "lokakuu 2026"


def test_numbers_and_percent() -> None:
    assert formatter("fi", "Europe/Helsinki").number(1234567) == f"1{NBSP}234{NBSP}567"
    assert formatter("en", "Europe/Helsinki").percent(Decimal("12.5")) == "12.5%"
    assert formatter("fi", "Europe/Helsinki").percent(12.5) == f"12,5{NBSP}%"


def test_plural_forms_of_exact_ints_only_are_remembered() -> None:
    en = formatter("en", "Europe/Helsinki")
    for _ in range(2):  # the second round comes from the cache
        assert en.plural(1, "day", "days") == "1 day"
        assert en.plural(21, "day", "days") == "21 days"
    # a template may pass any number; CLDR sees visible decimals, so 1.0 is not "one"
    # though it hashes like 1
    assert en.plural(Decimal("1.0"), "day", "days") == "1 days"  # type: ignore[arg-type]
    assert formatter("fi", "Europe/Helsinki").plural(21, "päivä", "päivää") == "21 päivää"


NINE = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)  # 9.30 in Helsinki


@pytest.mark.parametrize(
    ("lang", "locale", "tz", "expected"),
    [
        ("fi", "fi-FI", "Europe/Helsinki", "26. marraskuuta 2026 klo 9.30 Suomen aikaa"),
        ("sv", "sv-FI", "Europe/Helsinki", "26 november 2026 kl. 9.30 finsk tid"),
        ("sv", "sv-SE", "Europe/Stockholm", "26 november 2026 kl. 08:30 svensk tid"),
        ("en", "en-GB", "Europe/Helsinki", "26 November 2026 at 09:30 Finnish time"),
        ("en", None, "Europe/Helsinki", "26 November 2026 at 09:30 Finnish time"),
        ("fi", "fi-FI", "Asia/Tokyo", "26. marraskuuta 2026 klo 16.30 (aikavyöhyke: Japani)"),
    ],
)
def test_moment_carries_the_zone_in_the_readers_language(
    lang: str, locale: str | None, tz: str, expected: str
) -> None:
    shown = formatter(lang, tz, locale).moment(NINE)
    assert shown.replace(NBSP, " ") == expected


def test_dates_and_times_do_not_break_inside() -> None:
    f = formatter("fi", "Europe/Helsinki", "fi-FI")
    assert f.day(NINE) == f"26.{NBSP}marraskuuta{NBSP}2026"
    # one ordinary space: between the date and "klo", where a line may break
    assert f.moment(NINE).count(" ") == 1
    assert f.clock(NINE) == f"9.30{NBSP}Suomen{NBSP}aikaa"
    en_us = formatter("en", "America/New_York", "en-US")
    assert en_us.moment(NINE).replace(NBSP, " ").startswith("November 26, 2026 at 2:30")
