"""Property-based fuzzing of every operation in ``/openapi.json``: no 5xx, ever.

Each operation is called with schema-generated requests, once with an admin token and
once with a reseller token; the check is "not a server error". The app is built at
import time because schemathesis' fixture loader does not work with this pytest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from notifier import events as catalog  # noqa: E402
from notifier.api import create_app  # noqa: E402
from notifier.config import Secret, Settings  # noqa: E402

_VAR = Path(tempfile.mkdtemp(prefix="notifier-fuzz-"))
APP = create_app(Settings(var_dir=_VAR / "var", secret_key=Secret("fuzz")))
TOKENS = {
    "admin": APP.state.tokens.create(["admin"])[1],
    "acme": APP.state.tokens.create(["events:write", "messages:read"], brand="acme")[1],
}
for _brand in ("acme", "kustwebb"):  # something for the message endpoints to find
    APP.state.store.intake.accept(
        {
            "event": "domain.renewal_reminder",
            "brand": _brand,
            "recipient": {"email": f"x@{_brand}.example.fi"},
            "data": dict(catalog.CATALOG["domain.renewal_reminder"].sample),
        }
    )

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    APP.state.store.outbox.close()
    shutil.rmtree(_VAR, ignore_errors=True)


def _call(case: Any, token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
    )


@schema.parametrize()
@FUZZ
def test_no_server_errors_admin(case: Any) -> None:
    _call(case, TOKENS["admin"])


@schema.parametrize()
@FUZZ
def test_no_server_errors_reseller(case: Any) -> None:
    _call(case, TOKENS["acme"])
