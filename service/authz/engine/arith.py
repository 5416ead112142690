"""Arithmetic a matcher may do, with the size bounds pycasbin's evaluator (simpleeval) has.

`'a' * 1000000000` in a condition would build a gigabyte on every decision; simpleeval
refuses a string or list result over 100,000 items, and so does authz, with the same
limit. authz also refuses what simpleeval lets through: `%` string formatting (a width
like `'%0999999999d'` allocates as much) and products of integers over 65,536 bits.
Each refusal raises `ValueError`, which denies the decision as a policy error.

Each operation is bounded, but a matcher can repeat them: thousands of `'a' * 99999` or of
divisions of 65,536-bit integers (4 ms each) in one condition, on every candidate line. So
one decision's operators also share a budget of work (`Budget`, opened by each decision and
each plan on its thread), in units of about a nanosecond: a list or tuple item built costs
a unit, a character or byte an eighth, an integer operation a unit per 64-bit word it reads,
a product of integers the product of its operands' words and a division 8 times that
(schoolbook, about 8 times slower per word pair). The budget is about 50 ms of such work;
past it the operator raises `ValueError` like the other refusals.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from authz.engine.bindings import plain

# simpleeval's MAX_STRING_LENGTH: the longest text, list or tuple an operator may build.
MAX_SEQUENCE = 100_000
MAX_INT_BITS = 1 << 16
# Units of work the operators of one decision (or one plan) may do together.
MAX_WORK = 50_000_000
_DIVISION = 8


class _Left(threading.local):
    # None outside a decision: the operators' own bounds still hold.
    units: int | None = None


_left = _Left()


class Budget:
    """`with Budget():` around one decision or plan: its operators share MAX_WORK units."""

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        self._outer = start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        restore(self._outer)


def start() -> int | None:
    """Open a decision's budget on this thread (`Budget` without the object, for the hot
    path); returns what to `restore` when it ends."""
    outer = _left.units
    _left.units = MAX_WORK
    return outer


def remaining() -> int | None:
    """The units the current decision has left (None outside one)."""
    return _left.units


def restore(units: int | None) -> None:
    """Give the current decision back what it had (work done ahead of need and then redone)."""
    _left.units = units


def charge(units: int) -> None:
    """Spend `units` of the current decision's budget (none outside a decision); raises
    ValueError past it."""
    left = _left.units
    if left is not None:
        left -= units
        _left.units = left
        if left < 0:
            raise ValueError(f"the matcher's work exceeds one decision's budget of {MAX_WORK:,} units")


def _built(seq: Any, items: int) -> int:
    # Characters and bytes are copied eight to a machine word; list items one by one.
    return max(items, 1) if isinstance(seq, list | tuple) else max(items, 0) // 8 + 1


def _words(value: Any) -> int:
    return value.bit_length() // 64 + 1 if isinstance(value, int) else 1


def _sized(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


_NESTED = (str, bytes, list, tuple, dict)


def weight(value: Any, limit: int = MAX_SEQUENCE) -> int:
    """The items `value` holds, those of nested lists, tuples, dicts and strings counted too.

    simpleeval bounds a product by its length alone, but `[[0] * 99999] * 99999` is 99,999
    references to one list, and `==` or `<` between two of them walks every inner item: 5 s
    for 40 characters of condition, hours one level deeper. What `==` can walk is this
    weight. The walk stops once past `limit`, so it costs at most about twice the limit.
    """
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | dict):
        return 1
    total = 0
    stack: list[Any] = [value]
    while stack:
        held = stack.pop()
        total += len(held)
        if total > limit:
            return total
        items = held.values() if isinstance(held, dict) else held
        # The element types, found in C: a flat list of numbers needs no walk of its own.
        if not any(issubclass(kind, _NESTED) for kind in set(map(type, items))):
            continue
        for item in items:
            if isinstance(item, str | bytes):
                total += len(item)
            elif isinstance(item, list | tuple | dict):
                stack.append(item)
            if total > limit:
                return total
    return total


def mul(a: Any, b: Any) -> Any:
    """`a * b`, refusing a result over MAX_SEQUENCE items (nested ones counted, see `weight`)
    or an integer over MAX_INT_BITS."""
    a, b = plain(a), plain(b)
    for seq, count in ((a, b), (b, a)):
        if _sized(seq) and isinstance(count, int):
            if len(seq) * count > MAX_SEQUENCE:
                raise ValueError(f"a product of {len(seq)} x {count} items exceeds {MAX_SEQUENCE}")
            # Repeating references to nested values multiplies what a comparison walks.
            if count > 1 and isinstance(seq, list | tuple):
                size = weight(seq, MAX_SEQUENCE // count)
                if size * count > MAX_SEQUENCE:
                    raise ValueError(
                        f"a product of {size} x {count} items (nested ones counted) exceeds {MAX_SEQUENCE}"
                    )
            charge(_built(seq, len(seq) * count))
            return a * b
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ValueError(f"a product of integers over {MAX_INT_BITS} bits is not computed")
    charge(_words(a) * _words(b))
    return a * b


def add(a: Any, b: Any) -> Any:
    """`a + b`, refusing a concatenation longer than MAX_SEQUENCE.

    Only `*` repeats references (a matcher has no variables), so a concatenation's nested
    items are what its operands already cost to build: its length is its bound. `r.obj` and
    `r.sub` are their ids, as in pycasbin (`r.obj + '/*'` was a TypeError).
    """
    a, b = plain(a), plain(b)
    if _sized(a) and _sized(b):
        if len(a) + len(b) > MAX_SEQUENCE:
            raise ValueError(f"a concatenation of {len(a) + len(b)} items exceeds {MAX_SEQUENCE}")
        charge(_built(a, len(a) + len(b)))
    else:
        charge(max(_words(a), _words(b)))
    return a + b


def sub(a: Any, b: Any) -> Any:
    """`a - b`, charged to the decision's budget."""
    charge(max(_words(a), _words(b)))
    return a - b


def mod(a: Any, b: Any) -> Any:
    """`a % b` for numbers; `%` string formatting is refused (its width is an allocation)."""
    if isinstance(a, str | bytes):
        raise ValueError("% string formatting is not allowed in a matcher")
    charge(_words(a) * _words(b) * _DIVISION)
    return a % b


def truediv(a: Any, b: Any) -> Any:
    """`a / b`, charged to the decision's budget."""
    charge(_words(a) * _words(b) * _DIVISION)
    return a / b


def floordiv(a: Any, b: Any) -> Any:
    """`a // b`, charged to the decision's budget."""
    charge(_words(a) * _words(b) * _DIVISION)
    return a // b


# The operators a compiled matcher calls instead of the plain ones, by AST node type name.
GUARDED = {"Mult": mul, "Add": add, "Sub": sub, "Mod": mod, "Div": truediv, "FloorDiv": floordiv}
