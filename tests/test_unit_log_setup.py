"""The relay's log format (relay/_log_setup.py): the same lines as logging's own formatter with the same
format, though the timestamp's part to the second is made once a second."""

from __future__ import annotations

import logging

from relay._log_setup import FORMAT, _Formatter


def test_lines_are_logging_s_own_across_seconds_and_milliseconds():
    ours, logging_s = _Formatter(), logging.Formatter(FORMAT)
    start = 1_796_000_000.0
    for offset in (0.0, 0.0004, 0.5, 0.9996, 1.0, 1.001, 59.999, 60.0, 3600.25, 0.75):  # and back in time
        record = logging.LogRecord("mcptb.relay.access", logging.INFO, __file__, 1, "req_%s", ("x",), None)
        record.created = start + offset
        record.msecs = (record.created - int(record.created)) * 1000
        assert ours.format(record) == logging_s.format(record)
