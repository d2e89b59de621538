"""The limits on what a reseller's template may build, and the estimates that enforce
them *before* the work: a format width, a power or a ``replace`` is refused from its
operands, without building the result (checking a 1 GB string's length after
building it is too late).

The estimates are upper bounds computed in time proportional to the operands (which
are themselves bounded), never to the result. :func:`weight` measures a value through
its nesting — a list of 16,000 references to one 16,000-character string is small to
build but 256 M characters to print — and stops counting at the cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sized
from itertools import islice
from typing import Any

from jinja2.runtime import Undefined
from markupsafe import Markup

from ...errors import RenderError

MAX_OUTPUT_CHARS = 512 * 1024  # one rendered part (text or HTML) of a reseller template
MAX_VALUE_CHARS = 16 * 1024  # one value a reseller template computes (a string, a list)
MAX_WEIGHT = MAX_OUTPUT_CHARS  # a value measured through its nesting
MAX_PRODUCED_CHARS = 4 * MAX_OUTPUT_CHARS  # all output of one message, set blocks included
MAX_WIDTH = MAX_VALUE_CHARS  # a width or precision in %, format() or str.format
MAX_INT_BITS = 14_300  # ~4,300 decimal digits: Python's own int ↔ str limit
MAX_STEPS = 10_000  # loop iterations + calls in one message
MAX_RENDER_SECONDS = 2.0  # one message (both parts), checked between steps


def over(limit: str, detail: str) -> RenderError:
    """The one wording of a refusal, so ``templates check`` reads the same for all."""
    return RenderError(f"over the {limit} limit ({detail})")


#: types that weigh one character (exact types: a subclass may be a container)
_ONE = frozenset({bool, float, type(None)})


def weight(value: Any, cap: int = MAX_WEIGHT) -> int:
    """Characters ``value`` prints as, about (strings by length, containers through
    their items, one per item and other object); stops once over ``cap``."""
    kind = type(value)
    if kind is str or kind is Markup:  # most values: no stack needed
        return len(value)
    if kind in _ONE:
        return 1
    total = 0
    stack = [value]
    while stack and total <= cap:
        v = stack.pop()
        if isinstance(v, (str, bytes)):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + len(v)
            stack.extend(islice(v, cap - total + 1))
        elif isinstance(v, dict):
            total += 2 + 2 * len(v)
            for key, item in islice(v.items(), cap - total + 1):
                stack.append(key)
                stack.append(item)
        elif isinstance(v, int) and not isinstance(v, bool):
            total += v.bit_length() // 3 + 1
        else:
            total += 1
    return total


def check_weight(value: Any, cap: int = MAX_WEIGHT) -> None:
    if isinstance(value, Undefined):
        return
    w = weight(value, cap)
    if w > cap:
        raise over("value size", f"a value of over {cap:,} characters")


def check_value(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """A computed value, after the (bounded) work: its length and integer size."""
    if isinstance(value, (str, list, tuple, dict, set)) and len(value) > limit:
        raise over("value size", f"{len(value):,} > {limit:,} characters or items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise over("integer size", f"{value.bit_length():,} > {MAX_INT_BITS:,} bits")
    return value


def check_int_args(args: Iterable[Any]) -> None:
    """A count or width argument (``center(n)``, ``batch(n)``, ``range(n)``)."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE_CHARS:
            raise over("argument size", f"{arg:,} > {MAX_VALUE_CHARS:,}")


def check_size(estimate: int, what: str = "value size", limit: int = MAX_VALUE_CHARS) -> None:
    if estimate > limit:
        raise over(what, f"would be {estimate:,} > {limit:,} characters")


def check_width(width: Any, what: str = "width") -> None:
    if isinstance(width, int) and not isinstance(width, bool) and abs(width) > MAX_WIDTH:
        raise over("width", f"{what} {width:,} > {MAX_WIDTH:,}")


# --- operators -------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_power(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        bits = (abs(left).bit_length() - 1) * right
        if bits > MAX_INT_BITS:
            raise over("integer size", f"a power of about {bits:,} > {MAX_INT_BITS:,} bits")


def check_multiply(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise over("integer size", f"a product of about {bits:,} > {MAX_INT_BITS:,} bits")
        return
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and _is_int(n) and n > 0:
            check_size(len(seq) * n)
            if not isinstance(seq, str):
                check_size(weight(seq) * n, limit=MAX_WEIGHT)


def check_add(left: Any, right: Any) -> None:
    if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        check_size(len(left) + len(right))
        check_weight([left, right])


def check_concat(parts: Iterable[Any]) -> None:
    """``a ~ b ~ c``: the joined length, from the parts."""
    check_size(sum(weight(p) for p in parts))


# --- printf-style % and the format filter ----------------------------------------------

_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?(?P<conv>.?)",
    re.DOTALL,
)


def _number(digits: str) -> int:
    # never int() a digit run long enough to be slow or over Python's own limit
    return 10**18 if len(digits) > 18 else int(digits)


def check_printf(fmt: str, args: Any) -> None:
    """``fmt % args``: every width and precision (``*`` ones read from ``args``) and
    the result's length, estimated from the format and the arguments."""
    values = args if isinstance(args, tuple) else (args,)
    index = 0
    estimate = len(fmt)
    for m in _PRINTF.finditer(fmt):
        if m["conv"] == "%":
            continue
        widest = 0
        for group in ("width", "prec"):
            spec = m[group]
            if spec is None:
                continue
            if spec == "*":
                n = values[index] if index < len(values) else 0
                index += 1
            else:
                n = _number(spec)
            check_width(n, "width" if group == "width" else "precision")
            if _is_int(n):
                widest = max(widest, abs(n))
        if m["key"] is None:
            index += 1
        estimate += widest
    check_size(estimate + weight(args))


_SPEC_DIGITS = re.compile(r"\d+")


def check_format_spec(spec: str) -> None:
    """A ``str.format`` field's spec (``>1000000000``, ``.999999f``): every number in it."""
    for run in _SPEC_DIGITS.findall(spec):
        check_width(_number(run))


# --- filters and str methods that multiply their input ----------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def replace_estimate(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    text, old_s, new_s = _text(s), _text(old), _text(new)
    hits: int = len(text) + 1 if not old_s else text.count(old_s)
    if _is_int(count) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new_s) - len(old_s))


def join_estimate(sep: Any, items: Sized) -> int:
    sep_len = len(_text(sep))
    return weight(items) + max(0, len(items) - 1) * sep_len


def sized(items: Any) -> Any:
    """An iterable as something :func:`join_estimate` can measure (a generator is
    read into a list; the loop that made it was counted)."""
    if isinstance(items, (str, list, tuple, dict, set, frozenset)):
        return items
    return list(islice(items, MAX_VALUE_CHARS + 1))


def indent_estimate(s: Any, width: Any = 4) -> int:
    text = _text(s)
    pad: int = width if _is_int(width) else len(_text(width))
    return len(text) + (text.count("\n") + 1) * max(0, pad)


def wordwrap_estimate(s: Any, width: Any = 79, wrapstring: Any = None) -> int:
    text = _text(s)
    per_line: int = width if _is_int(width) else 1
    lines = len(text) // max(1, per_line) + text.count("\n") + 1
    return len(text) + lines * len(_text(wrapstring or "\n"))


def translate_estimate(s: Any, table: Any) -> int:
    text = _text(s)
    longest = 1
    if isinstance(table, Mapping):
        longest = max([1, *(weight(v) for v in islice(table.values(), MAX_VALUE_CHARS))])
    return len(text) * longest


def expandtabs_estimate(s: Any, tabsize: Any = 8) -> int:
    text = _text(s)
    size: int = tabsize if _is_int(tabsize) else 8
    return len(text) + text.count("\t") * size
