"""Giving freed memory back to the system after a burst of large answers.

Once a burst of large answers is over, CPython has freed their text, but glibc's heap keeps the pages
(small live objects pin it), so the relay's RSS would stay at the burst's high-water mark and creep
up with each burst. Measured: 100 cancelled 4 MiB streams, three rounds, 168 -> 252 MiB after the
rounds; ``malloc_trim(0)`` brings it back to 44 MiB each time. So the app reports the characters of
every answer that ends, and when the relay is idle and at least :data:`RELEASE_AFTER_CHARS` have
passed since the last release, the heap is trimmed (tens of ms for hundreds of MiB; never under
load, where the memory is in use anyway), after a full collection of reference cycles, and once more
when the next connection ends while idle: an answer whose write was cancelled stays reachable from
the cancelled write's traceback until its connection's frames are gone and the cycle is collected
(on trio that held 130-290 MiB after rounds of abandoned large answers; the pattern of
python-trio/trio#1793). Nothing is trimmed where glibc is absent (macOS, musl).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable

RELEASE_AFTER_CHARS = 16 * 1024 * 1024


@functools.cache
def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (looked up the first time it is needed: ctypes costs start-up)."""
    import ctypes

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class HeapRelease:
    def __init__(self, trim: Callable[[], Callable[[int], int] | None] = malloc_trim) -> None:
        self._trim = trim
        self._since = 0
        """Answer characters since the last release."""
        self._owed = False
        """A release happened at an answer's end; one more is owed when a connection ends while idle."""

    def answered(self, chars: int, idle: bool) -> None:
        """An answer of ``chars`` characters ended; ``idle``: no other answer is being written."""
        self._since += chars
        if idle and self._since >= RELEASE_AFTER_CHARS:
            self._since = 0
            self._release()
            self._owed = True  # and again once the connection's frames are gone

    def connection_closed(self, idle: bool) -> None:
        """A connection ended; ``idle``: no answer is being written. An answer whose write was cancelled
        (its caller left, or was too slow) is still held here by the cancelled write's traceback, in a
        reference cycle with its frame, until the cycle collector runs: so release once more, now that
        the connection's frames are gone."""
        if idle and self._owed:
            self._owed = False
            self._release()

    def _release(self) -> None:
        gc.collect()
        trim = self._trim()
        if trim is not None:
            trim(0)
