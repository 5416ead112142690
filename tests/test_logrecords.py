"""The decision log's records: what `Logger.makeRecord` gives, made per line without it, and
made its way when an application installs its own record factory."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from authz.logrecords import record_maker

TIMED = ("created", "msecs", "relativeCreated")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    yield logging.getLogger("authz.test-records")


def test_records_hold_what_make_record_gives(logger: logging.Logger) -> None:
    make = record_maker(logger, __file__, "_drain")
    before = time.time()
    made = make("decision id=1")
    after = time.time()
    standard = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "decision id=1", (), None, "_drain")
    assert type(made) is logging.LogRecord
    assert {k: v for k, v in vars(made).items() if k not in TIMED} == {
        k: v for k, v in vars(standard).items() if k not in TIMED
    }
    assert before <= made.created <= after
    assert made.msecs == int((made.created - int(made.created)) * 1000)
    assert made.relativeCreated == pytest.approx(standard.relativeCreated, abs=1000 * (after - before) + 1)
    assert made.getMessage() == "decision id=1" and made.threadName == threading.current_thread().name
    # Each record is its own: a later one does not change an earlier one.
    second = make("decision id=2")
    assert (made.msg, second.msg) == ("decision id=1", "decision id=2")


def test_an_applications_record_factory_still_makes_the_records(logger: logging.Logger) -> None:
    standard = logging.getLogRecordFactory()

    def tagged(*args: object, **kwargs: object) -> logging.LogRecord:
        record = standard(*args, **kwargs)
        record.tenant = "acme"
        return record

    logging.setLogRecordFactory(tagged)
    try:
        assert record_maker(logger, __file__, "_drain")("x").tenant == "acme"  # type: ignore[attr-defined]
    finally:
        logging.setLogRecordFactory(standard)
