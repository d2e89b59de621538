"""Which brand templates may render in this process: those whose source alone proves
that a render does a small, bounded amount of work.

A brand override renders in a worker process (:mod:`.isolated`) because the sandbox's
guards check *between* steps, and one step that runs long in C would hold the GIL. A
round trip to a worker costs more than the render itself (≈2 ms against 0.5 ms), so a
template is first read here, once, when it is compiled: if it is made only of what
cannot run away, it renders in-process, in the same bounded sandbox.

What cannot run away (anything else, and the template goes to a worker):

* no loops, macros, ``{% call %}``, ``{% include %}``/``{% import %}`` or
  ``{% set %}…{% endset %}`` blocks, and no ``self.<block>()``: without them each
  expression runs once per block, and each block once per render (the stock layouts
  call blocks outside loops or in loops the sandbox counts);
* no ``*``, ``**`` or ``%`` (the operators that multiply their operands);
* calls only to the template helpers (``strong``, ``facts``, ``plural``, …) and
  ``super()``, and to a few methods that are linear in their receiver (``get``,
  ``upper``, …); filters and tests only from short lists of linear ones; no ``*args``;
* names assigned never shadow a helper (so a call by that name is still the helper);
* at most :data:`MAX_NODES` syntax nodes.

So every step is one of a fixed set of operations on values the sandbox already caps
(:mod:`.bounds`: 16 K characters a value), and there are at most :data:`MAX_NODES`
of them. In-process renders also carry a CPU allowance (:data:`INLINE_CPU_SECONDS`,
time spent compiling excluded): one that uses it up is handed to a worker
(:class:`~.sandbox.Handover`); after :data:`OVERRUNS` such renders (not one: a cold
start or a busy machine can cost one), workers render that template from then on. Stock
templates (``templates/``) are the platform's own and are not vetted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jinja2 import nodes

from .helpers import MODE_HELPERS
from .sandbox import BUDGET, BoundedSandbox, Handover

#: syntax nodes one brand template may have and still render in-process (the stock
#: renewal reminder override of a brand has ~250)
MAX_NODES = 2_000
#: CPU one in-process render of a brand template may use (its templates' compilation
#: excluded) before it is handed to a worker; an ordinary one uses about 0.5 ms
INLINE_CPU_SECONDS = 0.05
#: renders over the allowance after which a template always renders in a worker
OVERRUNS = 3

#: functions a template may call
CALLABLE_NAMES = frozenset({*MODE_HELPERS["html"], *MODE_HELPERS["text"], "plural", "super"})
#: names a template may not use at all (block recursion, macro internals)
FORBIDDEN_NAMES = frozenset({"self", "caller", "varargs", "kwargs", "loop"})
#: methods whose work is linear in their receiver and bounded arguments
METHODS = frozenset(
    {
        "get",
        "keys",
        "values",
        "items",
        "upper",
        "lower",
        "title",
        "capitalize",
        "strip",
        "lstrip",
        "rstrip",
        "startswith",
        "endswith",
        "isoformat",
    }
)
#: Jinja's filters that are linear in their input (the platform's own are added)
FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "float",
        "forceescape",
        "int",
        "join",
        "last",
        "length",
        "lower",
        "replace",
        "round",
        "safe",
        "string",
        "title",
        "trim",
        "upper",
        # the platform's (helpers.FILTERS)
        "date",
        "datetime",
        "time",
        "money",
        "number",
        "percent",
        "month",
        "listing",
    }
)
TESTS = frozenset(
    {
        "!=",
        "<",
        "<=",
        "==",
        ">",
        ">=",
        "boolean",
        "defined",
        "divisibleby",
        "eq",
        "equalto",
        "escaped",
        "even",
        "false",
        "float",
        "ge",
        "greaterthan",
        "gt",
        "in",
        "integer",
        "le",
        "lessthan",
        "lower",
        "lt",
        "mapping",
        "ne",
        "none",
        "number",
        "odd",
        "sameas",
        "sequence",
        "string",
        "true",
        "undefined",
        "upper",
    }
)

#: syntax that is bounded in itself (what it contains is checked on its own)
_PLAIN: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Extends,
    nodes.Block,
    nodes.If,
    nodes.Assign,
    nodes.With,
    nodes.Scope,
    nodes.FilterBlock,
    nodes.ScopedEvalContextModifier,
    nodes.EvalContextModifier,
    nodes.Const,
    nodes.Tuple,
    nodes.List,
    nodes.Dict,
    nodes.Pair,
    nodes.Keyword,
    nodes.CondExpr,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Add,
    nodes.Sub,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.MarkSafe,
    nodes.MarkSafeIfAutoescape,
)


def unbounded(tree: nodes.Template) -> str | None:
    """Why ``tree`` (a template as parsed, before the sandbox's rewriting) might run
    away — the first construct outside the bounded set, with its line — or ``None``."""
    count = 0
    for node in _walk(tree):
        count += 1
        if count > MAX_NODES:
            return f"over {MAX_NODES:,} syntax nodes"
        why = _refused(node)
        if why:
            return f"line {node.lineno}: {why}"
    return None


def _walk(tree: nodes.Node) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.iter_child_nodes())
    return out


def _refused(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        if node.name in FORBIDDEN_NAMES:
            return f"the name {node.name!r}"
        if node.ctx != "load" and node.name in CALLABLE_NAMES:
            return f"assigns {node.name!r}, a helper's name"
        return None
    if isinstance(node, nodes.Call):
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return "a call with *args or **kwargs"
        callee = node.node
        if isinstance(callee, nodes.Name) and callee.name in CALLABLE_NAMES:
            return None
        if isinstance(callee, nodes.Getattr) and callee.attr in METHODS:
            return None
        return "a call to something other than a helper"
    if isinstance(node, nodes.Filter):
        if node.name not in FILTERS:
            return f"the filter {node.name!r}"
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return "a filter with *args or **kwargs"
        return None
    if isinstance(node, nodes.Test):
        if node.name not in TESTS:
            return f"the test {node.name!r}"
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return "a test with *args or **kwargs"
        return None
    if isinstance(node, _PLAIN):
        return None
    name = type(node).__name__
    if isinstance(node, nodes.BinExpr):
        return f"the operator {node.operator!r}"
    if isinstance(node, nodes.Stmt):
        return f"a {{% {name.lower()} %}} statement"
    return f"a {name} expression"


class VettedSandbox(BoundedSandbox):
    """The bounded sandbox for in-process renders: compiling a template that is not
    the platform's own (outside ``trusted``) and not provably bounded raises
    :class:`Handover`; a template's compilation is not charged to the render's CPU
    allowance."""

    def __init__(self, *args: Any, trusted: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trusted = os.path.join(os.path.normpath(trusted), "")

    def vet(self, tree: nodes.Template, name: str | None, filename: str | None) -> None:
        if filename is None or not os.path.normpath(filename).startswith(self._trusted):
            why = unbounded(tree)
            if why is not None:
                raise Handover(f"{name}: {why}", lasting=True)

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get(None)
        start = time.thread_time()
        try:
            return super().compile(*args, **kwargs)
        finally:
            if budget is not None:
                budget.excuse(time.thread_time() - start)
