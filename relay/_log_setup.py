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
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._stamp},{int(record.msecs):03d}"


def setup(level: str) -> None:
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller's frame is looked up (the HOWTO's way)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
