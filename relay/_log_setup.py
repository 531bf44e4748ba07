"""The relay's log on stderr: ``2026-12-07 09:28:42,718 INFO mcptb.relay.access: ...``.

At thousands of requests a second the access log's line per request was the largest single cost of a
request (measured: about 30 us of the relay's 350 us at concurrency 8, and 13 % of its CPU with the
log at ``warning``). The lines need no caller's file and line, thread or process, so logging is told
not to look them up - the logging HOWTO's "Optimization" section - and the timestamp's part to the
second is formatted once a second. The output is logging's own format, unchanged.
"""

from __future__ import annotations

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._cached = (-1, "")
        """(a second, its timestamp): one tuple, so a reader never sees one without the other."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, stamp = self._cached
        if int(record.created) != second:
            second, stamp = int(record.created), time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._cached = (second, stamp)
        return f"{stamp},{int(record.msecs):03d}"


def setup(level: str) -> None:
    """The relay process's logging (its CLI's: the settings are the process's)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False
    logging._srcfile = None  # no caller's frame is looked up (the HOWTO's way); so no stack_info either
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
