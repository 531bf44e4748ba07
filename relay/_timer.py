"""The one task that keeps the broker's time.

It sleeps until the broker's next deadline, or until the broker says an earlier one came
(:meth:`Timer.earlier`, the broker's injected ``on_earlier``), then ticks it. The clock is the broker's
(``time.monotonic``); the sleep is relative, so the event loop's own clock never has to agree with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import anyio.lowlevel

from ._broker import Broker


class Timer:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._wake = anyio.Event()

    def earlier(self, at: float) -> None:
        """A deadline before the one slept until came: wake up and look again."""
        self._wake.set()

    async def run(self, broker: Broker) -> None:
        while True:
            broker.tick(self.clock())
            self._wake = anyio.Event()
            delay = broker.next_deadline() - self.clock()
            if delay <= 0:
                await anyio.lowlevel.checkpoint()
                continue
            with anyio.move_on_after(delay):
                await self._wake.wait()
