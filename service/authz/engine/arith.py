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


def mul(a: Any, b: Any) -> Any:
    """`a * b`, refusing a sequence longer than MAX_SEQUENCE or an integer over MAX_INT_BITS."""
    for seq, count in ((a, b), (b, a)):
        if _sized(seq) and isinstance(count, int) and len(seq) * count > MAX_SEQUENCE:
            raise ValueError(f"a product of {len(seq)} x {count} items exceeds {MAX_SEQUENCE}")
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ValueError(f"a product of integers over {MAX_INT_BITS} bits is not computed")
    return a * b


def add(a: Any, b: Any) -> Any:
    """`a + b`, refusing a concatenation longer than MAX_SEQUENCE."""
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
