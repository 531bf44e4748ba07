"""Giving freed memory back to the system after a burst of large answers.

Once a burst of large answers is over, CPython has freed their text, but glibc's heap keeps the pages
(small live objects pin it), so the relay's RSS would stay at the burst's high-water mark and creep
up with each burst. Measured: 100 cancelled 4 MiB streams, three rounds, 168 -> 252 MiB after the
rounds; ``malloc_trim(0)`` brings it back to 44 MiB each time.

So the app reports the characters of every answer that ends, and every connection that ends; once
at least :data:`RELEASE_AFTER_CHARS` have passed since the last release, the heap is trimmed, after
a full collection of reference cycles, as soon as the relay has been idle for
:data:`RELEASE_AFTER_QUIET` seconds (no answer being written, none ended and no connection closed in
that time): never under load, where the memory is in use anyway, and late enough that what a
cancelled write held is garbage. (An answer whose write was cancelled - its caller left, or was too
slow - stays reachable from the cancelled write's traceback, in a reference cycle with its frame,
until its connection's task has ended and the collector runs: trimming at the answer's end left trio
holding 90-290 MiB after rounds of abandoned large answers; the pattern of python-trio/trio#1793.)
Nothing is trimmed where glibc is absent (macOS, musl).

:class:`HeapRelease` decides (a clock is injected; :meth:`HeapRelease.step` says when to look
again); :meth:`HeapRelease.run` is the task that drives it.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable

import anyio

RELEASE_AFTER_CHARS = 16 * 1024 * 1024
RELEASE_AFTER_QUIET = 1.0
"""Seconds without an answer written or ended or a connection closed before the heap is trimmed."""


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
    def __init__(
        self,
        trim: Callable[[], Callable[[int], int] | None] = malloc_trim,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._trim = trim
        self._clock = clock
        self._busy = busy
        """Whether an answer is being written now (asked at each step: one may have begun since)."""
        self._since = 0
        """Answer characters since the last release."""
        self._last = clock()
        """When an answer or a connection last ended."""
        self._owed = False
        """Enough characters passed: a release is owed at the next quiet moment."""
        self._wake: anyio.Event | None = None
        """Set when a release becomes owed (the driver waits on it)."""

    def answered(self, chars: int) -> None:
        """An answer of ``chars`` characters ended."""
        self._since += chars
        self._last = self._clock()
        if self._since >= RELEASE_AFTER_CHARS and not self._owed:
            self._owed = True
            if self._wake is not None:
                self._wake.set()

    def connection_closed(self) -> None:
        """A connection ended (its frames, and what a cancelled write of its held, are garbage now)."""
        self._last = self._clock()

    def step(self) -> float | None:
        """Release if a release is owed and the relay has been quiet long enough: None; else the
        seconds to wait before looking again (also None when nothing is owed)."""
        if not self._owed:
            return None
        quiet_at = self._last + RELEASE_AFTER_QUIET
        now = self._clock()
        if self._busy():
            return RELEASE_AFTER_QUIET
        if now < quiet_at:
            return quiet_at - now
        self._since = 0
        self._owed = False
        gc.collect()
        trim = self._trim()
        if trim is not None:
            trim(0)
        return None

    async def run(self) -> None:
        """Release whenever one is owed and the relay is quiet (the relay's task group runs this)."""
        while True:
            wait = self.step()
            if wait is not None:
                await anyio.sleep(wait)
            elif not self._owed:
                self._wake = anyio.Event()
                await self._wake.wait()
