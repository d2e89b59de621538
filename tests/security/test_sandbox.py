"""Issue 10 §3: a reseller's template override cannot stall or exhaust the service.

Bounds are enforced before the work (each bomb is refused with the limit it hit, having
allocated little); what the guards miss is stopped by the worker process it renders
in (killed at the deadline, memory and CPU capped), while the API keeps answering and
other brands' mail flows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier import events as catalog
from notifier.api import create_app
from notifier.brands import BrandRegistry
from notifier.compose.checks import check_all
from notifier.compose.pipeline import Pipeline
from notifier.compose.render import Renderer, engine, isolated, sample_event
from notifier.config import PROJECT_ROOT, Secret, Settings
from notifier.errors import RenderError
from tests.security import render_faults

FILE = "brands/acme/templates/en/domain.renewed.jinja"
S = "{% set s = 'a' * 16000 %}"

#: name → (the override's body, the limit its error must name)
BOMBS: dict[str, tuple[str, str]] = {
    "printf width": ("{{ ('%1000000000d' % 1)|length }}", "width"),
    "printf * width": ("{{ ('%*d' % (1000000000, 1))|length }}", "width"),
    "str.format width": ("{{ '{:>1000000000}'.format(1) }}", "width"),
    "str.format nested width": ("{{ '{:>{w}}'.format(1, w='1000000000') }}", "width"),
    "str.format repeated field": ("{{ ('{0}' * 1000).format('x' * 16000) }}", "value size"),
    "format filter width": ("{{ '%1000000000s'|format('x') }}", "width"),
    "format filter precision": ("{{ '%.1000000000f'|format(1.5) }}", "width"),
    "power chain": ("{{ (((9 ** 64) ** 64) ** 64) ** 64 }}", "integer size"),
    "power": ("{{ 2 ** (10 ** 8) }}", "integer size"),
    "product": (
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}",
        "integer size",
    ),
    "range": ("{{ range(1000000000)|list|length }}", "argument size"),
    "str.replace": (S + "{{ s.replace('a', s)|length }}", "value size"),
    "replace filter": (S + "{{ s|replace('a', s)|length }}", "value size"),
    "str.join": (S + "{{ s.join(s)|length }}", "value size"),
    "join filter": (S + "{{ s|join(s)|length }}", "value size"),
    "indent filter": ("{% set s = '\\n' * 16000 %}{{ s|indent(16000)|length }}", "value size"),
    "center filter": ("{{ 'x'|center(1000000000) }}", "argument size"),
    "wordwrap filter": (
        "{% set s = 'a ' * 8000 %}{{ s|wordwrap(1, wrapstring='x' * 16000)|length }}",
        "value size",
    ),
    "str.expandtabs": ("{% set s = '\t' * 16000 %}{{ s.expandtabs(16000)|length }}", "value size"),
    "str.translate": (S + "{{ s.translate({97: s})|length }}", "value size"),
    "string times": ("{{ (('x' * 16000) * 16000)|length }}", "value size"),
    "list times": ("{{ (['x' * 16000] * 16000)|string|length }}", "value size"),
    "list.extend doubling": (
        "{% set l = [1] %}{% for i in range(40) %}{% set _ = l.extend(l) %}{% endfor %}",
        "value size",
    ),
    "set block doubling": (
        "{% set x = 'x' * 16000 %}"
        + "{% set x %}{{ x }}{{ x }}{% endset %}" * 13
        + "{{ x|length }}",
        "work",
    ),
    "~ doubling": ("{% set x = 'x' * 16000 %}" + "{% set x = x ~ x %}" * 13, "value size"),
    "literal in a loop": (
        "{% set x %}{% for i in range(9000) %}" + "y" * 5000 + "{% endfor %}{% endset %}",
        "work",
    ),
}


def _brands(tmp_path: Path, body: str) -> Path:
    brands = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    override = brands / "acme" / "templates" / "en"
    override.mkdir(parents=True, exist_ok=True)
    (override / "domain.renewed.jinja").write_text(
        "{% extends layout %}{% block subject %}x{% endblock %}{% block body %}\n"
        + body
        + "\n{% endblock %}"
    )
    return brands


def _settings(tmp_path: Path, body: str) -> Settings:
    brands = _brands(tmp_path, body)
    return Settings(var_dir=tmp_path / "var", brands_dir=brands, secret_key=Secret("s"))


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_before_the_work(tmp_path: Path, name: str) -> None:
    body, limit = BOMBS[name]
    brands = BrandRegistry(_brands(tmp_path, body), "nordname")
    # in this process (not isolated) so that what the render allocated can be measured
    renderer = Renderer(PROJECT_ROOT / "templates", brands, isolate=False)
    event = sample_event("domain.renewed", "acme", "en")
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match=rf"^{FILE}:2: over the {limit} limit") as err:
            renderer.render(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20, f"{name}: {peak:,} bytes allocated before refusing"
    assert "(" in str(err.value)  # says what: "(width 1,000,000,000 > 16,384)"


def test_bounds_still_let_ordinary_templates_through(tmp_path: Path) -> None:
    body = (
        "{{ '%05d|%-8s|%.2f' % (42, 'ok', 1.5) }} {{ '{:>6}|{:.3}'.format('r', 'abcdef') }} "
        "{{ 'a-b'|replace('-', '+') }} {{ [1, 2, 3]|join(', ') }} {{ 2 ** 100 }} "
        "{{ 'ab' * 3 }} {% set x %}{% for i in range(3) %}{{ i }}{% endfor %}{% endset %}{{ x }}"
        " {{ '%s'|format('fmt') }} {{ domain|upper }}"
    )
    p = Pipeline(_settings(tmp_path, body))
    text = p.compose(p.sample("domain.renewed", "acme", "en")).rendered.text
    # (the paragraph layout collapses runs of spaces)
    assert "00042|ok |1.50 r|abc a+b 1, 2, 3 1267650600228229401496703205376" in text
    assert "ababab 012" in text and "fmt ÄÄNEKOSKENPUUTARHA.FI" in text


def test_a_refusal_in_the_worker_names_file_and_line(tmp_path: Path) -> None:
    p = Pipeline(_settings(tmp_path, "\n\n{{ ('%1000000000d' % 1)|length }}"))
    with pytest.raises(RenderError, match=rf"^{FILE}:4: over the width limit"):
        p.compose(p.sample("domain.renewed", "acme", "en"))


def test_templates_check_fails_a_bomb_naming_file_and_line(tmp_path: Path) -> None:
    body = "Hello.\n\n{{ 'x' * 3 }}\n{{ 2 ** (10 ** 8) }}"
    results = check_all(Pipeline(_settings(tmp_path, body)))
    failed = [r for r in results if not r.ok]
    assert failed and {(r.brand, r.event, r.language) for r in failed} == {
        ("acme", "domain.renewed", "en")
    }
    for r in failed:
        assert r.problem is not None and f"{FILE}:5: over the integer size limit" in r.problem


# --- the worker processes -------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[isolated.Pool]:
    p = isolated.Pool(size=1, kill_after=1.0)
    yield p
    p.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()
    except FileNotFoundError:
        return True


def test_a_runaway_render_is_killed_at_the_deadline_and_its_worker_replaced(
    pool: isolated.Pool,
) -> None:
    first = pool.run(render_faults.pid)
    with pytest.raises(RenderError, match=r"^x\.jinja: over the time limit \(1 s; the render"):
        pool.run(render_faults.backtrack, where="x.jinja")
    assert _gone(first)
    second = pool.run(render_faults.pid)
    assert second != first


def test_a_worker_over_its_memory_limit_fails_that_render_alone(pool: isolated.Pool) -> None:
    first = pool.run(render_faults.pid)
    with pytest.raises(RenderError, match="over the memory limit"):
        pool.run(render_faults.allocate, isolated.MEMORY_BYTES + 2**20)
    assert pool.run(render_faults.allocate, 2**20) == 2**20
    assert pool.run(render_faults.pid) != first  # replaced after a MemoryError


def test_workers_run_under_kernel_limits(pool: isolated.Pool) -> None:
    import resource

    limits = pool.run(render_faults.limits)
    soft_as, _ = limits["as"]
    soft_cpu, _ = limits["cpu"]
    assert soft_as != resource.RLIM_INFINITY and soft_as < 4 * isolated.MEMORY_BYTES
    assert soft_cpu != resource.RLIM_INFINITY


def test_a_worker_exits_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from notifier.compose.render.isolated import Pool\n"
        "from tests.security import render_faults\n"
        "print(Pool().run(render_faults.pid), flush=True)\n"
        "os._exit(0)\n"  # no clean-up: as if killed
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    worker = int(out.stdout)
    deadline = time.monotonic() + 60  # generous: only "it does exit", not how fast
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(worker)


# --- the service keeps answering --------------------------------------------------------


def _body(brand: str, name: str, language: str, **data: Any) -> dict[str, Any]:
    return {
        "event": name,
        "brand": brand,
        "recipient": {"email": "aino@example.fi", "language": language},
        "data": {**catalog.CATALOG[name].sample, **data},
    }


def test_a_runaway_override_stalls_neither_the_api_nor_other_brands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One brand's override spins in C (a guard missed it, simulated); meanwhile
    /healthz and another brand's event are answered, and the runaway is then stopped
    at its deadline with a 422 naming its file. (The loop makes it a template that
    renders in a worker: one its source proves bounded renders in-process, see
    test_inline.py.)"""
    settings = _settings(tmp_path, "{% for word in ['Renewed.'] %}{{ word }}{% endfor %}")
    spinning = tmp_path / "brands" / "acme" / "spinning"
    test_pool = isolated.Pool(size=2, kill_after=2.0)
    monkeypatch.setattr(isolated, "_POOL", (os.getpid(), test_pool))
    monkeypatch.setattr(engine, "render_job", render_faults.spinning_render_job)
    app = create_app(settings)
    token = app.state.tokens.create(["events:write"], label="registry")[1]
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            runaway = asyncio.create_task(
                c.post("/v1/events", json=_body("acme", "domain.renewed", "en"), headers=headers)
            )
            while not spinning.exists():  # the override is now spinning in its worker
                assert not runaway.done(), (await runaway).text
                await asyncio.sleep(0.01)
            health = await c.get("/healthz")
            other = await c.post(
                "/v1/events", json=_body("kustwebb", "domain.renewed", "sv"), headers=headers
            )
            # the same brand's stock template, and another brand's override, too
            same = await c.post(
                "/v1/events", json=_body("acme", "domain.expired", "en"), headers=headers
            )
            override = await c.post(
                "/v1/events",
                json=_body("kustwebb", "domain.renewal_reminder", "sv"),
                headers=headers,
            )
            assert not runaway.done()  # all of the above were answered while it spun
            assert health.status_code == 200
            assert (other.status_code, same.status_code) == (202, 202), other.text + same.text
            assert override.status_code == 202, override.text
            answer = await runaway
            assert answer.status_code == 422
            detail = answer.json()["detail"]
            assert f"{FILE}: over the time limit" in detail
            # the killed worker was replaced: overrides render again
            again = await c.post(
                "/v1/events",
                json=_body("kustwebb", "domain.renewal_reminder", "sv", domain="bygg.se"),
                headers=headers,
            )
            assert again.status_code == 202, again.text

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.run(scenario())
    finally:
        test_pool.close()
