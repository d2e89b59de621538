"""The environments templates run in, and the guards on what a reseller's template may do.

Stock templates run in :class:`Environment`; a message whose template chain includes a
brand override runs in :class:`BoundedSandbox`: Jinja's ``SandboxedEnvironment`` (no
attribute escapes) plus a per-message work budget (loop steps and calls, characters
produced, a deadline) and bounds on every value, each checked *before* the work from
the operands (:mod:`.bounds`). The sandbox runs in a worker process with a hard kill
and memory limits (:mod:`.isolated`), which stops whatever these guards miss.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import jinja2
from jinja2 import nodes as jinja_nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.ext import Extension
from jinja2.runtime import Undefined, markup_join
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from . import bounds
from .bounds import (
    MAX_OUTPUT_CHARS,
    MAX_PRODUCED_CHARS,
    MAX_RENDER_SECONDS,
    MAX_STEPS,
    MAX_VALUE_CHARS,
    over,
)

__all__ = [
    "BUDGET",
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "BoundedSandbox",
    "Budget",
    "Environment",
    "Handover",
    "install_guards",
]


class Handover(Exception):
    """An in-process render stops and goes to a worker process (:mod:`.static`): its
    template is not provably bounded (``lasting``: it always will be), or it used up its
    CPU allowance. Not a ``RenderError``: nothing is wrong with the template as far as
    anyone knows yet."""

    def __init__(self, reason: str, *, lasting: bool = False) -> None:
        super().__init__(reason)
        self.lasting = lasting


class Budget:
    """Work a reseller template may do in one message: loop iterations and calls
    (``steps``), characters output anywhere (set blocks and macros included) and wall
    time. Shared through a context variable by the guards. ``cpu_seconds``: the
    allowance of an in-process render (this thread's CPU), over which it is handed over
    (:class:`Handover`) to a worker process."""

    __slots__ = ("cpu_deadline", "cpu_due", "deadline", "produced", "steps")

    def __init__(self, cpu_seconds: float | None = None) -> None:
        self.steps = MAX_STEPS
        self.produced = 0
        now = time.monotonic()
        self.deadline = now + MAX_RENDER_SECONDS
        # reading this thread's CPU clock is a system call; wall time is not. A thread
        # cannot use more CPU than the wall time that passed, so the CPU clock is read
        # only once the allowance could have been used up (``cpu_due``, wall time)
        self.cpu_deadline = time.thread_time() + cpu_seconds if cpu_seconds is not None else 0.0
        self.cpu_due = now + cpu_seconds if cpu_seconds is not None else float("inf")

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise over("work", f"{MAX_STEPS:,} loop steps or calls")
        self.check_time()

    def check_time(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise over("time", f"{MAX_RENDER_SECONDS} s")
        if now > self.cpu_due:
            left = self.cpu_deadline - time.thread_time()
            if left < 0:
                raise Handover("over the in-process CPU allowance")
            self.cpu_due = now + left

    def excuse(self, cpu_seconds: float) -> None:
        """Time spent compiling a template is not the render's."""
        self.cpu_deadline += cpu_seconds
        self.cpu_due += cpu_seconds

    def charge(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise over("work", f"{MAX_PRODUCED_CHARS:,} characters produced")


BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("render_budget")


# --- the guards the rewritten template calls ------------------------------------------


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = BUDGET.get()
    for item in iterable:
        budget.tick()
        yield item


def _guard_concat(*parts: Any) -> Any:
    bounds.check_concat(parts)
    return bounds.check_value(markup_join(parts))


def _guard_out(value: Any) -> Any:
    """An output expression: charged at its size before Jinja turns it into text."""
    if isinstance(value, str):
        BUDGET.get().charge(len(value))
    elif not isinstance(value, Undefined):
        BUDGET.get().charge(bounds.weight(value, MAX_PRODUCED_CHARS))
    return value


def _guard_charge(chars: int) -> str:
    """Literal template text about to be output (in a loop it adds up)."""
    BUDGET.get().charge(chars)
    return ""


class Guards(Extension):
    """Holds the guard functions. The rewritten template reaches them as
    ``environment.extensions[…].name`` (an ``ExtensionAttribute``), which a template
    cannot shadow with a variable or macro of the same name."""

    identifier = "notifier.guards"

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        self.iter = _guard_iter
        self.concat = _guard_concat
        self.out = _guard_out
        self.charge = _guard_charge


class _GuardCalls(CodeGenerator):
    """Calls to the guards are plain Python calls. A sandbox compiles every call to
    ``environment.call(context, f, …)``, which checks ``f`` first; the guards are
    called some 130 times a message, are the platform's own, and cannot be named by a
    template (an ``ExtensionAttribute`` has no syntax)."""

    def visit_Call(
        self, node: jinja_nodes.Call, frame: Frame, forward_caller: bool = False
    ) -> None:
        func = node.node
        if not (
            isinstance(func, jinja_nodes.ExtensionAttribute)
            and func.identifier == Guards.identifier
            and not node.kwargs
            and node.dyn_args is None
            and node.dyn_kwargs is None
        ):
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        self.visit(func, frame)
        self.write("(")
        for i, arg in enumerate(node.args):
            if i:
                self.write(", ")
            self.visit(arg, frame)
        self.write(")")


class _Guard(NodeTransformer):
    """Routes every ``for`` loop, ``~`` concatenation and output of a reseller template
    through the guards above (the sandbox itself intercepts none of them)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env

    def _call(self, name: str, args: list[Any], lineno: int) -> jinja_nodes.Call:
        func = jinja_nodes.ExtensionAttribute(Guards.identifier, name)
        node = jinja_nodes.Call(func, args, [], None, None)
        node.set_lineno(lineno)
        node.set_environment(self.env)
        return node

    def visit_For(self, node: jinja_nodes.For) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.For)
        visited.iter = self._call("iter", [visited.iter], visited.lineno)
        return visited

    def visit_Concat(self, node: jinja_nodes.Concat) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.Concat)
        return self._call("concat", list(visited.nodes), visited.lineno)

    def visit_Output(self, node: jinja_nodes.Output) -> jinja_nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, jinja_nodes.Output)
        literal = 0
        children: list[jinja_nodes.Expr] = []
        for child in visited.nodes:
            if isinstance(child, jinja_nodes.TemplateData):
                literal += len(child.data)
                children.append(child)
            else:
                children.append(self._call("out", [child], child.lineno))
        if literal:
            const = jinja_nodes.Const(literal, lineno=visited.lineno)
            children.insert(0, self._call("charge", [const], visited.lineno))
        visited.nodes = children
        return visited


# --- str.format, % and the filters: bounded before the work --------------------------


class _BoundedFormatting:
    """``str.format`` for templates: each field's spec is checked before it is
    formatted, and the running length after each field (``'{0}{0}{0}…'``)."""

    _length = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._length = len(format_string)
        result: str = super().vformat(format_string, args, kwargs)  # type: ignore[misc]
        return result

    def format_field(self, value: Any, format_spec: str) -> Any:
        bounds.check_format_spec(format_spec)
        bounds.check_weight(value, MAX_VALUE_CHARS)
        result = super().format_field(value, format_spec)  # type: ignore[misc]
        self._length += len(result)
        bounds.check_size(self._length)
        return result


class _Formatter(_BoundedFormatting, SandboxedFormatter):
    pass


class _EscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


def _pre_replace(a: dict[str, Any]) -> None:
    count = a.get("count")
    bounds.check_size(
        bounds.replace_estimate(a["s"], a["old"], a["new"], -1 if count is None else count)
    )


def _pre_join(a: dict[str, Any]) -> None:
    bounds.check_size(bounds.join_estimate(a["d"], a["value"]))


def _pre_indent(a: dict[str, Any]) -> None:
    bounds.check_size(bounds.indent_estimate(a["s"], a["width"]))


def _pre_wordwrap(a: dict[str, Any]) -> None:
    bounds.check_size(bounds.wordwrap_estimate(a["s"], a["width"], a["wrapstring"]))


def _pre_format(a: dict[str, Any]) -> None:
    bounds.check_printf(str(a["value"]), a["kwargs"] or a["args"])


#: filters whose result can be much larger than their input: estimated first
_PRECHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "replace": _pre_replace,
    "join": _pre_join,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "format": _pre_format,
}


def _sized_filter(name: str, func: Callable[..., Any], limit: int) -> Callable[..., Any]:
    precheck = _PRECHECKS.get(name)
    signature = inspect.signature(func) if precheck else None

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        BUDGET.get().check_time()  # filters are not calls: no step, but the clock
        bounds.check_int_args(args[1:])
        bounds.check_int_args(kwargs.values())
        for arg in args:
            if not isinstance(arg, (jinja2.runtime.Context, jinja_nodes.EvalContext)):
                bounds.check_weight(arg)
        if signature is not None and precheck is not None:
            if name == "join":  # a generator is read once: measured, then joined
                i = 1 if args and isinstance(args[0], jinja_nodes.EvalContext) else 0
                if len(args) > i:
                    args = (*args[:i], bounds.sized(args[i]), *args[i + 1 :])
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                pass  # the call itself fails with Jinja's message
            else:
                bound.apply_defaults()
                precheck(bound.arguments)
        return bounds.check_value(func(*args, **kwargs), limit)

    return wrapper


def _str_precheck(s: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``str`` methods that multiply their input, estimated from their arguments."""
    if name == "replace" and len(args) >= 2:
        bounds.check_size(bounds.replace_estimate(s, *args[:3]))
    elif name == "join" and args:
        items = bounds.sized(args[0])
        bounds.check_size(bounds.join_estimate(s, items))
        return (items, *args[1:])
    elif name == "expandtabs":
        bounds.check_size(bounds.expandtabs_estimate(s, *args[:1]))
    elif name == "translate" and args:
        bounds.check_size(bounds.translate_estimate(s, args[0]))
    return args


#: attribute values that cannot be ``str.format`` (most are: the test is per attribute)
_NOT_METHODS = frozenset({str, int, float, bool, type(None), list, dict, tuple, Markup})

#: what Jinja's compiler passes along with a call made in a loop or block
_JINJA_KWARGS = frozenset({"_loop_vars", "_block_vars", "caller"})


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
    iterations and calls count against a per-message budget with a deadline; ``*``,
    ``**``, ``+``, ``%``, ``~``, ``str.format``, filters and calls are refused from
    their operands when the result would be too large."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _GuardCalls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["extensions"] = [*kwargs.get("extensions", ()), Guards]
        super().__init__(*args, **kwargs)
        self._safe_attributes: dict[tuple[type, str], bool] = {}
        self.globals.pop("lipsum", None)  # 16,000 paragraphs of filler in one call

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
        self.vet(tree, name, filename)
        result = _Guard(self).visit(tree)
        assert isinstance(result, jinja_nodes.Template)
        return result

    def vet(self, tree: jinja_nodes.Template, name: str | None, filename: str | None) -> None:
        """A template as parsed, before the guards are added: a subclass may refuse it."""

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            bounds.check_power(left, right)
        elif operator == "*":
            bounds.check_multiply(left, right)
        elif operator == "+":
            bounds.check_add(left, right)
        elif operator == "%" and isinstance(left, str):
            bounds.check_printf(left, right)
        return bounds.check_value(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` as Jinja wraps them, with the formatter
        swapped for one that bounds each field (:class:`_BoundedFormatting`)."""
        if value.__class__ in _NOT_METHODS or super().wrap_str_format(value) is None:
            return None
        f_self = value.__self__
        formatter: SandboxedFormatter = (
            _EscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else _Formatter(self)
        )
        str_type: type[str] = type(f_self)
        if value.__name__ == "format_map":

            def wrapper(mapping: Any) -> str:
                return str_type(formatter.vformat(f_self, (), mapping))

        else:

            def wrapper(*args: Any, **kwargs: Any) -> str:  # type: ignore[misc]
                return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is _guard_out or __obj is _guard_charge or __obj is _guard_iter:
            return __obj(*args)  # kwargs: only Jinja's _loop_vars/_block_vars
        if __obj is _guard_concat:
            return __obj(*args)
        BUDGET.get().tick()
        named = [v for k, v in kwargs.items() if k not in _JINJA_KWARGS]
        bounds.check_int_args(args)
        bounds.check_int_args(named)
        for arg in (*args, *named):
            bounds.check_weight(arg)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            args = _str_precheck(owner, getattr(__obj, "__name__", ""), args)
        result = bounds.check_value(super().call(__context, __obj, *args, **kwargs))
        if isinstance(owner, (list, dict, set)):  # append, extend, update, …
            bounds.check_value(owner)
        return result


def install_guards(env: jinja2.Environment) -> None:
    """Bound a sandbox's filters; run after every filter is installed (a filter added
    later would escape the size bounds)."""
    env.filters = {
        name: _sized_filter(name, f, MAX_OUTPUT_CHARS if name == "paragraphs" else MAX_VALUE_CHARS)
        for name, f in env.filters.items()
    }
