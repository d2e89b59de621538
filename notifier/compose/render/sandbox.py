"""The environments templates run in, and the bounds on what a reseller's template may do.

Stock templates run in :class:`Environment`; a message whose template chain includes a
brand override runs in :class:`BoundedSandbox`: Jinja's ``SandboxedEnvironment`` (no
attribute escapes) plus a per-render work budget (loop steps and calls, and a deadline)
and limits on the size of every value and of the output, so one reseller's template
cannot stall or bloat the service for everyone.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import jinja2
from jinja2 import nodes as jinja_nodes
from jinja2.runtime import markup_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from ...errors import RenderError

MAX_OUTPUT_CHARS = 512 * 1024  # one rendered part of a reseller template
MAX_VALUE_CHARS = 16 * 1024  # one value a reseller template computes
MAX_STEPS = 10_000  # loop iterations + calls in one render of a reseller template
MAX_RENDER_SECONDS = 2.0


class Budget:
    """Work a reseller template may do in one render: loop iterations and calls
    (``steps``), and wall time. Shared through a context variable by the guards."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderError(f"template does too much work (over {MAX_STEPS} loop steps or calls)")
        if time.monotonic() > self.deadline:
            raise RenderError(f"rendering took over {MAX_RENDER_SECONDS} s")


BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("render_budget")


def _check_value(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > limit:
        raise RenderError(f"template value too large ({len(value)} > {limit})")
    return value


def _check_args(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE_CHARS:
            raise RenderError(f"number too large for a template argument: {arg}")


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = BUDGET.get()
    for item in iterable:
        budget.tick()
        yield item


def _guard_concat(*parts: Any) -> Any:
    return _check_value(markup_join(parts))


class _Guard(NodeTransformer):
    """Routes every ``for`` loop and ``~`` concatenation of a reseller template through
    the budget guards above (the sandbox itself intercepts neither)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env

    def _call(self, name: str, args: list[Any], lineno: int) -> jinja_nodes.Call:
        node = jinja_nodes.Call(jinja_nodes.Name(name, "load"), args, [], None, None)
        node.set_lineno(lineno)
        node.set_environment(self.env)
        return node

    def visit_For(self, node: jinja_nodes.For) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.For)
        visited.iter = self._call("_guard_iter", [visited.iter], visited.lineno)
        return visited

    def visit_Concat(self, node: jinja_nodes.Concat) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.Concat)
        return self._call("_guard_concat", list(visited.nodes), visited.lineno)


def _sized_filter(func: Callable[..., Any], limit: int) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_args(args[1:])
        _check_args(kwargs.values())
        return _check_value(func(*args, **kwargs), limit)

    return wrapper


class Environment(jinja2.Environment):
    """Templates get their globals as a plain dict rather than Jinja's ``ChainMap``:
    each render copies them into its context, and copying a ``ChainMap`` goes key by
    key in Python (~7 µs a template render, two renders a message). The price, that
    globals changed after a template is loaded do not reach it, is one Jinja asks to
    avoid anyway; :func:`~.engine.make_env` sets them all before any template loads."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class BoundedSandbox(Environment, SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes), plus bounds on work and size: loop
    iterations and calls count against a per-render budget with a deadline; ``*``,
    ``**``, ``+``, ``~``, filters and calls refuse huge arguments and results."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._safe_attributes: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Jinja's verdict, remembered per (type, attribute name): it depends on nothing
        else (the name, and ``isinstance`` against Python's internal types), yet costs
        ~0.5 µs, and the stock layout reads some 70 brand attributes a message. An
        object whose ``__class__`` is not its type (a proxy) is judged every time, as
        ``isinstance`` looks at ``__class__``; the memo is cleared if names pile up."""
        cls = type(obj)
        if obj.__class__ is not cls:
            return super().is_safe_attribute(obj, attr, value)
        key = (cls, attr)
        safe = self._safe_attributes.get(key)
        if safe is None:
            if len(self._safe_attributes) >= 4096:
                self._safe_attributes.clear()
            safe = self._safe_attributes[key] = super().is_safe_attribute(obj, attr, value)
        return safe

    def _parse(self, source: str, name: str | None, filename: str | None) -> jinja_nodes.Template:
        tree = super()._parse(source, name, filename)
        result = _Guard(self).visit(tree)
        assert isinstance(result, jinja_nodes.Template)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > 64:
            raise RenderError("exponent too large in template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * n > MAX_VALUE_CHARS:
                        raise RenderError("template value too large")
        return _check_value(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        BUDGET.get().tick()
        _check_args(args)
        _check_args(kwargs.values())
        return _check_value(super().call(__context, __obj, *args, **kwargs))


def install_guards(env: jinja2.Environment) -> None:
    """Bound a sandbox's filters and give it the guards :class:`_Guard` calls; run after
    every filter is installed (a filter added later would escape the size bounds)."""
    env.filters = {
        name: _sized_filter(f, MAX_OUTPUT_CHARS if name == "paragraphs" else MAX_VALUE_CHARS)
        for name, f in env.filters.items()
    }
    env.globals["_guard_iter"] = _guard_iter
    env.globals["_guard_concat"] = _guard_concat
