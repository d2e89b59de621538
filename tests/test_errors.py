"""``notifier.errors.from_pydantic``: the one translator of pydantic errors."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from notifier.errors import ValidationError, field_path, from_pydantic


class Item(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    price: int

    @pydantic.field_validator("price")
    @classmethod
    def positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    items: list[Item]
    note: str


def _errors(raw: Any) -> list[dict[str, Any]]:
    with pytest.raises(pydantic.ValidationError) as info:
        Order.model_validate(raw)
    return info.value.errors(include_url=False)  # type: ignore[return-value]


def test_paths_and_messages() -> None:
    errors = _errors({"items": [{"price": 1}, {"price": -1, "x": 1}], "extra": True})
    found = from_pydantic(errors, "data")
    assert isinstance(found, ValidationError)
    assert {(e.loc, e.message) for e in found.errors} == {
        ("data.items[1].price", "must be positive"),
        ("data.items[1].x", "unknown field"),
        ("data.note", "field required"),
        ("data.extra", "unknown field"),
    }


def test_without_a_prefix_and_from_a_request() -> None:
    errors = _errors({"items": "no", "note": "n"})
    assert [e.loc for e in from_pydantic(errors).errors] == ["items"]
    fastapi_style = [{"loc": ("query", "status"), "msg": "bad", "type": "enum"}]
    assert [e.loc for e in from_pydantic(fastapi_style, request=True).errors] == ["status"]
    assert [e.loc for e in from_pydantic(fastapi_style).errors] == ["query.status"]
    whole = [{"loc": ("body",), "msg": "Value error, not JSON", "type": "value_error"}]
    assert [(e.loc, e.message) for e in from_pydantic(whole, request=True).errors] == [
        ("body", "not JSON")
    ]


def test_field_path() -> None:
    assert field_path(("items", 0, "price")) == "items[0].price"
    assert field_path((0,), "events") == "events[0]"
    assert field_path(()) == "body"
