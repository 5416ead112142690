"""A rough, conservative measure of the memory a cached value holds.

The caches bound themselves by bytes as well as entries, so a few large entries cannot
hold what thousands of small ones would. `sys.getsizeof` of every object reachable
through containers is an over-estimate (shared strings count once per reference), which
errs on the side of evicting early.
"""

from __future__ import annotations

import sys
from typing import Any

_CONTAINERS = frozenset((dict, list, tuple, set, frozenset))


def approx_bytes(value: object) -> int:
    """`sys.getsizeof` of `value` and of everything inside its dicts, lists, tuples and sets.

    Iterative (a token's claims may nest deeply), and each container is measured with
    C-level passes (`map`, a set of its item types), so a flat tuple of strings such as a
    principal's permissions costs no Python-level loop.
    """
    size = sys.getsizeof
    total = size(value)
    stack: list[Any] = [value] if type(value) in _CONTAINERS else []
    while stack:
        container = stack.pop()
        # tuple() returns a tuple as is, without a copy.
        items = (*container.keys(), *container.values()) if type(container) is dict else tuple(container)
        total += sum(map(size, items))
        if not _CONTAINERS.isdisjoint(map(type, items)):
            stack.extend(item for item in items if type(item) in _CONTAINERS)
    return total
