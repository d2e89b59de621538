"""Brands are data: ``brands/<id>.toml`` plus optional ``brands/<id>/templates/<lang>/``.

A brand is what a recipient sees: the name, address and logo in the footer, the From
and Reply-To, the link domain every platform link is rewritten to, the languages it
writes in and its time zone. Invalid files fail loudly, naming file and field.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import BrandError, UnknownBrand
from .fields import DomainName, Email, HttpUrl, SafeStr, domain_to_ascii

LANGUAGES: tuple[str, ...] = ("fi", "sv", "en")
Language = Literal["fi", "sv", "en"]
_ALL: tuple[Language, ...] = ("fi", "sv", "en")
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Selector(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    active: bool = False


class Colors(_Model):
    primary: Color = "#1f4e79"
    accent: Color = "#f2f6fa"
    text: Color = "#1d1d1f"
    button_text: Color = "#ffffff"


class Support(_Model):
    email: Email
    phone: SafeStr | None = None
    #: opening hours per language, e.g. {fi = "ma–pe klo 9–17"}
    hours: dict[Language, SafeStr] = Field(default_factory=dict)
    url: HttpUrl | None = None


class Brand(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    name: SafeStr
    legal_name: SafeStr
    address: list[SafeStr] = Field(min_length=1, max_length=5)
    #: the address as written in a language, where its street and town have other
    #: official names there (bilingual towns: {fi = ["Hovioikeudenpuistikko 9", …]})
    address_by_language: dict[
        Language, Annotated[list[SafeStr], Field(min_length=1, max_length=5)]
    ] = Field(default_factory=dict)
    #: the country line of the address in each language, e.g. {fi = "Suomi"}
    country: dict[Language, SafeStr] = Field(default_factory=dict)
    business_id: SafeStr | None = None
    platform: bool = False

    from_address: Email
    from_name: SafeStr | None = None
    reply_to: Email | None = None
    sending_domain: DomainName | None = None
    bounce_domain: DomainName | None = None
    link_domain: DomainName
    test_address: Email | None = None

    logo_url: HttpUrl
    logo_width: Annotated[int, Field(ge=16, le=600)] = 160
    colors: Colors = Colors()
    support: Support
    website: HttpUrl | None = None

    default_language: Language = "fi"
    languages: list[Language] = Field(default_factory=lambda: list(_ALL), min_length=1)
    timezone: str = "Europe/Helsinki"
    #: the locale each language is written in, e.g. {sv = "sv-FI"}: Babel's dates and
    #: times follow it ("kl. 9.30" in sv-FI, "kl. 09:30" in sv-SE); default fi-FI,
    #: sv-SE, en-GB
    locale: dict[Language, Annotated[str, Field(pattern=r"^[a-z]{2}[-_][A-Z]{2}$")]] = Field(
        default_factory=dict
    )
    dkim: list[Selector] = Field(default_factory=list)
    unverified_policy: Literal["platform", "hold"] = "platform"
    dns_verified: bool = False

    @pydantic.field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @pydantic.field_validator("locale")
    @classmethod
    def _locale(cls, value: dict[str, str]) -> dict[str, str]:
        from babel import Locale, UnknownLocaleError

        for lang, tag in value.items():
            if tag[:2] != lang:
                raise ValueError(f"{lang}: locale {tag!r} is not for language {lang!r}")
            try:
                Locale.parse(tag.replace("-", "_"))
            except (UnknownLocaleError, ValueError) as exc:
                raise ValueError(f"{lang}: unknown locale {tag!r}") from exc
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Brand:
        if self.default_language not in self.languages:
            raise ValueError("default_language must be one of languages")
        active = [s for s in self.dkim if s.active and s.algorithm == "rsa"]
        if len(active) > 1:
            raise ValueError("dkim: at most one active RSA selector")
        if len([s for s in self.dkim if s.active and s.algorithm == "ed25519"]) > 1:
            raise ValueError("dkim: at most one active Ed25519 selector")
        names = [s.name for s in self.dkim]
        if len(names) != len(set(names)):
            raise ValueError("dkim: selector names must be unique")
        return self

    # derived values -------------------------------------------------------------

    @property
    def display_name(self) -> str:
        return self.from_name or self.name

    @property
    def mail_domain(self) -> str:
        """DKIM ``d=`` and the Message-ID domain, in A-label form."""
        return domain_to_ascii(self.sending_domain or self.from_address.rpartition("@")[2])

    @property
    def envelope_domain(self) -> str:
        return domain_to_ascii(self.bounce_domain) if self.bounce_domain else self.mail_domain

    @property
    def link_host(self) -> str:
        return domain_to_ascii(self.link_domain)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def locale_for(self, lang: str) -> str | None:
        """The brand's locale for ``lang`` (``sv-FI``), or None for the default."""
        return next((tag for key, tag in self.locale.items() if key == lang), None)

    def active_selector(self, algorithm: str = "rsa") -> Selector | None:
        for sel in self.dkim:
            if sel.active and sel.algorithm == algorithm:
                return sel
        return None

    def choose_language(self, wanted: str | None) -> str:
        """Recipient's language → brand default → ``en``, among the enabled ones."""
        if wanted:
            wanted = wanted.strip().lower().replace("_", "-").split("-")[0]
            if wanted in self.languages:
                return wanted
        if self.default_language in self.languages:
            return self.default_language
        return "en" if "en" in self.languages else self.languages[0]


class BrandRegistry:
    """All brands of one ``brands/`` directory, loaded and validated once."""

    def __init__(self, directory: Path, platform_id: str) -> None:
        self.directory = directory
        self._brands: dict[str, Brand] = {}
        self._overrides: dict[str, Path | None] = {}
        for path in sorted(directory.glob("*.toml")):
            brand = load_brand(path)
            self._brands[brand.id] = brand
            override = directory / brand.id / "templates"
            self._overrides[brand.id] = override if override.is_dir() else None
        if platform_id not in self._brands:
            raise BrandError(str(directory / f"{platform_id}.toml"), "id", "platform brand missing")
        self.platform = self._brands[platform_id]
        if not self.platform.platform:
            raise BrandError(str(directory / f"{platform_id}.toml"), "platform", "must be true")

    def get(self, brand_id: str, loc: str = "brand") -> Brand:
        try:
            return self._brands[brand_id]
        except KeyError:
            raise UnknownBrand(brand_id, sorted(self._brands), loc) from None

    def all(self) -> list[Brand]:
        return list(self._brands.values())

    def with_brand(self, brand: Brand) -> BrandRegistry:
        """A copy of this registry with ``brand`` in place of the brand of its id (e.g.
        the same brand with its DNS verified)."""
        copy = object.__new__(BrandRegistry)
        copy.directory = self.directory
        copy._brands = {**self._brands, brand.id: brand}
        copy._overrides = dict(self._overrides)
        copy._overrides.setdefault(brand.id, None)
        copy.platform = copy._brands[self.platform.id]
        return copy

    def override_dir(self, brand_id: str) -> Path | None:
        """``brands/<id>/templates`` when the brand overrides templates (found at load)."""
        return self._overrides.get(brand_id)


def load_brand(path: Path) -> Brand:
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BrandError(str(path), "(syntax)", str(exc)) from exc
    except OSError as exc:
        raise BrandError(str(path), "(file)", str(exc)) from exc
    if raw.get("id", path.stem) != path.stem:
        raise BrandError(str(path), "id", f"must match the file name ({path.stem!r})")
    raw.setdefault("id", path.stem)
    try:
        return Brand.model_validate(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(brand)"
        raise BrandError(str(path), loc, err["msg"]) from exc
