"""`Tally`: a count that request threads bump without taking a lock."""

from __future__ import annotations

import threading


class Tally:
    """`bump()` adds one; `value` is read when the metrics are scraped.

    Each thread adds to a cell of its own, so bumps from several threads never race
    (a shared `+=` can lose one) and never wait on a lock; `value` sums the cells.
    """

    __slots__ = ("_cells", "_local", "_lock")

    def __init__(self) -> None:
        self._local = threading.local()
        self._cells: list[list[int]] = []
        self._lock = threading.Lock()

    def bump(self) -> None:
        """Add one."""
        try:
            cell: list[int] = self._local.cell
        except AttributeError:
            cell = self._new_cell()
        cell[0] += 1

    def _new_cell(self) -> list[int]:
        cell = [0]
        with self._lock:
            self._cells.append(cell)
        self._local.cell = cell
        return cell

    @property
    def value(self) -> int:
        """The number of bumps so far."""
        with self._lock:
            cells = list(self._cells)
        return sum(cell[0] for cell in cells)
