"""Arithmetic a matcher may do, with the size bounds pycasbin's evaluator (simpleeval) has.

`'a' * 1000000000` in a condition would build a gigabyte on every decision; simpleeval
refuses a string or list result over 100,000 items, and so does authz, with the same
limit. authz also refuses what simpleeval lets through: `%` string formatting (a width
like `'%0999999999d'` allocates as much) and products of integers over 65,536 bits.
Each refusal raises `ValueError`, which denies the decision as a policy error.
"""

from __future__ import annotations

from typing import Any

# simpleeval's MAX_STRING_LENGTH: the longest text, list or tuple an operator may build.
MAX_SEQUENCE = 100_000
MAX_INT_BITS = 1 << 16


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
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ValueError(f"a product of integers over {MAX_INT_BITS} bits is not computed")
    return a * b


def add(a: Any, b: Any) -> Any:
    """`a + b`, refusing a concatenation longer than MAX_SEQUENCE.

    Only `*` repeats references (a matcher has no variables), so a concatenation's nested
    items are what its operands already cost to build: its length is its bound.
    """
    if _sized(a) and _sized(b) and len(a) + len(b) > MAX_SEQUENCE:
        raise ValueError(f"a concatenation of {len(a) + len(b)} items exceeds {MAX_SEQUENCE}")
    return a + b


def mod(a: Any, b: Any) -> Any:
    """`a % b` for numbers; `%` string formatting is refused (its width is an allocation)."""
    if isinstance(a, str | bytes):
        raise ValueError("% string formatting is not allowed in a matcher")
    return a % b


# The operators a compiled matcher calls instead of the plain ones, by AST node type name.
GUARDED = {"Mult": mul, "Add": add, "Mod": mod}
