"""The relay's log format (relay/_log_setup.py): the same lines as logging's own formatter with the same
format, though the timestamp's part to the second is made once a second."""

from __future__ import annotations

import logging
import time

from relay._log_setup import FORMAT, _Formatter


def test_lines_are_logging_s_own_across_seconds_and_milliseconds():
    ours, logging_s = _Formatter(), logging.Formatter(FORMAT)
    start = 1_796_000_000.0
    for offset in (0.0, 0.0004, 0.5, 0.9996, 1.0, 1.001, 59.999, 60.0, 3600.25, 0.75):  # and back in time
        record = logging.LogRecord("mcptb.relay.access", logging.INFO, __file__, 1, "req_%s", ("x",), None)
        record.created = start + offset
        record.msecs = (record.created - int(record.created)) * 1000
        assert ours.format(record) == logging_s.format(record)


def test_lines_are_logging_s_own_across_a_daylight_saving_change(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        ours, logging_s = _Formatter(), logging.Formatter(FORMAT)
        change = 1_774_746_000.0  # 2026-03-29 01:00 UTC: Berlin's clocks go from 02:00 to 03:00
        for offset in (-3600.5, -1.0, -0.001, 0.0, 0.999, 1.0, 3600.0, -0.5):
            record = logging.LogRecord("mcptb.relay", logging.INFO, __file__, 1, "a line", (), None)
            record.created = change + offset
            record.msecs = (record.created - int(record.created)) * 1000
            assert ours.format(record) == logging_s.format(record)
            if offset == 0.0:  # the zone is in effect: 01:00 UTC is 03:00 in Berlin from then on
                assert ours.format(record).startswith("2026-03-29 03:00:00,000 ")
    finally:
        monkeypatch.undo()
        time.tzset()
