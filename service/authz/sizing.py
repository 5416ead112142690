"""A rough, conservative measure of the memory a cached value holds.

The caches bound themselves by bytes as well as entries, so a few large entries cannot
hold what thousands of small ones would. `sys.getsizeof` of every object reachable
through containers is an over-estimate (shared strings count once per reference), which
errs on the side of evicting early.
"""

from __future__ import annotations

import sys


def approx_bytes(value: object) -> int:
    """`sys.getsizeof` of `value` and of everything inside its dicts, lists, tuples and sets."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, tuple | list | set | frozenset):
            stack.extend(item)
    return total
