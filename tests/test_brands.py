from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.brands import BrandRegistry, load_brand
from notifier.config import PROJECT_ROOT
from notifier.errors import BrandError, UnknownBrand

BRANDS = PROJECT_ROOT / "brands"


def test_shipped_brands_load() -> None:
    reg = BrandRegistry(BRANDS, "nordname")
    ids = {b.id for b in reg.all()}
    assert {"nordname", "acme", "kustwebb"} <= ids
    assert reg.platform.platform
    assert reg.get("acme").default_language == "fi"
    assert reg.get("kustwebb").default_language == "sv"
    assert reg.override_dir("kustwebb") is not None


def test_language_chain() -> None:
    reg = BrandRegistry(BRANDS, "nordname")
    acme = reg.get("acme")
    assert acme.choose_language("sv-FI") == "sv"
    assert acme.choose_language("de") == "fi"  # not enabled → brand default
    assert acme.choose_language(None) == "fi"
    only_en = acme.model_copy(update={"languages": ["en", "sv"], "default_language": "sv"})
    assert only_en.choose_language("fi") == "sv"


def test_unknown_brand_lists_known() -> None:
    reg = BrandRegistry(BRANDS, "nordname")
    with pytest.raises(UnknownBrand) as info:
        reg.get("nope")
    assert "acme" in str(info.value)


def _write(tmp: Path, text: str, name: str = "bad") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text + (BRANDS / "acme.toml").read_text())
    return path


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('link_domain_typo = "x"\n', "link_domain_typo"),
        ('platform = "maybe"\n', "platform"),
    ],
)
def test_invalid_brand_file_names_file_and_field(tmp_path: Path, extra: str, field: str) -> None:
    path = _write(tmp_path, extra)
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert str(path) in str(info.value)


def test_bad_colour_and_timezone(tmp_path: Path) -> None:
    text = (BRANDS / "acme.toml").read_text().replace('primary = "#c2410c"', 'primary = "orange"')
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.field == "colors.primary"
    text = (BRANDS / "acme.toml").read_text().replace("Europe/Helsinki", "Europe/Atlantis")
    path.write_text(text)
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.field == "timezone"


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("name = \n")
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert str(path) in str(info.value)


def test_file_name_must_match_id(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('id = "acme"\n' + (BRANDS / "acme.toml").read_text())
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.field == "id"


@pytest.mark.parametrize(
    ("locale", "field"),
    [
        ('{ sv = "fi-FI" }', "locale"),  # not Swedish
        ('{ sv = "sv-XX" }', "locale"),  # no such locale
        ('{ sv = "swedish" }', "locale.sv"),  # not a tag
    ],
)
def test_bad_locale_names_the_field(tmp_path: Path, locale: str, field: str) -> None:
    text = (BRANDS / "acme.toml").read_text()
    text = re.sub(r"(?m)^locale = .*$", f"locale = {locale}", text)
    path = tmp_path / "l.toml"
    path.write_text(text)
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.field == field


def test_shipped_brands_write_finland_swedish_and_localise_the_country() -> None:
    for brand in BrandRegistry(BRANDS, "nordname").all():
        assert brand.locale == {"fi": "fi-FI", "sv": "sv-FI", "en": "en-GB"}
        assert not any(line.strip() == "Finland" for line in brand.address)
    assert BrandRegistry(BRANDS, "nordname").get("nordname").country["fi"] == "Suomi"


def test_a_bilingual_town_is_written_in_the_reader_s_language() -> None:
    """Kustwebb is in Vasa/Vaasa: Finnish mail gives the Finnish street and town names,
    Swedish and English mail the Swedish ones the brand writes by default."""
    from notifier.compose.pipeline import Pipeline
    from notifier.config import Secret, Settings

    pipeline = Pipeline(Settings(secret_key=Secret("t")))
    footers = {}
    for lang in ("fi", "sv", "en"):
        composed = pipeline.prepare(
            {
                "event": "domain.expired",
                "brand": "kustwebb",
                "recipient": {"email": "a@example.fi", "language": lang},
                "data": dict(pipeline.sample("domain.expired", "kustwebb", lang).data),
            }
        )
        footers[lang] = composed.rendered.text + composed.rendered.html
    assert "Hovioikeudenpuistikko 9" in footers["fi"] and "65100 Vaasa" in footers["fi"]
    assert "Hovrättsesplanaden" not in footers["fi"]
    for lang in ("sv", "en"):
        assert "Hovrättsesplanaden 9" in footers[lang] and "65100 Vasa" in footers[lang]


def test_address_by_language_is_validated(tmp_path: Path) -> None:
    text = 'address_by_language = { de = ["x"] }\n' + (BRANDS / "acme.toml").read_text()
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(BrandError) as info:
        load_brand(path)
    assert info.value.field.startswith("address_by_language")
