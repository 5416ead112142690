"""Log records for the lines one thread writes in a run, each made without `LogRecord.__init__`.

The decision log's writer makes a record per decision: `Logger.makeRecord` took about 3 µs
of it (the clock, the thread's and the process's names and ids, the multiprocessing and
asyncio lookups), as much as the line's own text and formatting together. The lines of a
run share all of that but the time and the message, so a record is made once per run and
copied per line, its time read again. When an application installs its own record factory
or logger class, its records are made its way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def record_maker(logger: logging.Logger, pathname: str, func: str) -> Callable[[str], logging.LogRecord]:
    """A function making `logger`'s INFO record of a message, as `makeRecord` would, now."""
    if logging.getLogRecordFactory() is not logging.LogRecord or type(logger).makeRecord is not (
        logging.Logger.makeRecord
    ):
        return lambda msg: logger.makeRecord(logger.name, logging.INFO, pathname, 0, msg, (), None, func)
    base = logger.makeRecord(logger.name, logging.INFO, pathname, 0, "", (), None, func)
    fields = dict(vars(base))
    started, relative = base.created, base.relativeCreated
    new, now = object.__new__, time.time

    def make(msg: str) -> logging.LogRecord:
        record: logging.LogRecord = new(logging.LogRecord)
        values = record.__dict__
        values.update(fields)
        created = now()
        values["created"] = created
        values["msecs"] = int((created - int(created)) * 1000) + 0.0
        values["relativeCreated"] = relative + (created - started) * 1000
        values["msg"] = msg
        return record

    return make
