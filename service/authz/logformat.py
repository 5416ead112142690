"""The log line format of `authz` commands, with each second's timestamp text made once.

`logging.Formatter` formats the local time with `time.strftime` for every record: about
1.5 µs, a fifth of a decision log line's cost, paid for every `Check`. Local time changes
only on whole seconds, so the text of the current second is kept and the milliseconds are
added to it, giving the same characters.
"""

from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecondCachedFormatter(logging.Formatter):
    """`logging.Formatter` whose default timestamp text is reused within a second."""

    _cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The record's time as `logging.Formatter.formatTime` writes it."""
        if datefmt is not None or not self.default_msec_format:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached_second, text = self._cached
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            # One assignment: a thread reading it meanwhile sees the old pair or the new one.
            self._cached = (second, text)
        return self.default_msec_format % (text, record.msecs)


def configure(level: int) -> None:
    """The root logger at `level`, on stderr, in FORMAT."""
    handler = logging.StreamHandler()
    handler.setFormatter(SecondCachedFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
