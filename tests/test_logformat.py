"""`authz` commands' log lines: the same characters as `logging.Formatter`, each second's
timestamp text made once."""

from __future__ import annotations

import logging

from authz.logformat import FORMAT, SecondCachedFormatter


def _record(created: float) -> logging.LogRecord:
    record = logging.LogRecord("authz.decisions", logging.INFO, __file__, 1, "decision id=x", (), None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def test_lines_equal_the_standard_formatters_across_seconds() -> None:
    ours, standard = SecondCachedFormatter(FORMAT), logging.Formatter(FORMAT)
    # Within a second, across seconds, back in time (a clock step), and across a day.
    times = [1_764_800_000.0, 1_764_800_000.999, 1_764_800_001.002, 1_764_799_999.5, 1_764_886_400.25]
    for created in times:
        assert ours.format(_record(created)) == standard.format(_record(created))


def test_a_date_format_is_honoured() -> None:
    record = _record(1_764_800_000.5)
    expected = logging.Formatter(FORMAT, "%H").format(record)
    assert SecondCachedFormatter(FORMAT, "%H").format(record) == expected
