"""Which HTTP connections and request bodies the relay takes on: a synchronous core, like the broker.

Connections (``--max-connections``). Each open connection is in one phase: ``idle`` (kept alive
between requests), ``head`` (its request head has not fully arrived), ``body`` or ``busy`` (reading
a body, or being answered). At the limit, a new connection takes the place of one that holds a slot
without using it, so dripping or forgotten connections cannot shut healthy callers out:
1. the idle connection that has waited longest, else
2. the connection whose head has been arriving longest, once that is over :data:`HEAD_GRACE`
   (a real client sends its head at once; a slowloris drips it).
The one chosen is closed at once (:attr:`Connection.close` is its injected effect). Only when every
slot is reading a body or being answered is the new connection refused (503).

Bodies (``--max-body-memory``). The bytes of all request bodies being received together are
bounded: a body is admitted when its declared length fits what is left, and a chunked body takes
its share as it arrives; one that does not fit is refused (503, retry later), never queued in
memory. A body's share is returned once it has been received (it then belongs to its request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["idle", "head", "body", "busy"]

HEAD_GRACE = 1.0
"""Seconds a head may take to arrive before its connection may make room for a new one."""


@dataclass(eq=False)
class Connection:
    close: Callable[[], None]
    """Closes this connection (its task ends quietly); injected by the I/O shell."""
    phase: Phase = "head"
    since: float = 0.0
    """When the current phase began."""
    body_bytes: int = 0
    """Body memory this connection holds now (see :class:`Admission`)."""


@dataclass
class Admission:
    max_connections: int
    max_body_memory: int
    clock: Callable[[], float]
    open: list[Connection] = field(default_factory=list)
    body_memory: int = 0

    def connect(self, close: Callable[[], None]) -> Connection | None:
        """A new connection: admitted (making room if it must) or None (refuse it with a 503)."""
        if len(self.open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                return None
            self.disconnect(victim)
            victim.close()
        conn = Connection(close, "head", self.clock())
        self.open.append(conn)
        return conn

    def enter(self, conn: Connection, phase: Phase) -> None:
        """``conn`` is in ``phase`` now (no change if it already was: ``since`` stays when it began)."""
        if conn.phase != phase:
            conn.phase, conn.since = phase, self.clock()

    def disconnect(self, conn: Connection) -> None:
        if conn in self.open:
            self.open.remove(conn)
            self.body_received(conn)

    def take_body(self, conn: Connection, size: int) -> bool:
        """Reserve ``size`` more bytes of body memory for ``conn``; False if they do not fit."""
        if self.body_memory + size > self.max_body_memory:
            return False
        self.body_memory += size
        conn.body_bytes += size
        return True

    def body_received(self, conn: Connection) -> None:
        """The body is complete (or abandoned): its memory no longer counts here."""
        self.body_memory -= conn.body_bytes
        conn.body_bytes = 0

    def _victim(self) -> Connection | None:
        idle = [c for c in self.open if c.phase == "idle"]
        if idle:
            return min(idle, key=lambda c: c.since)
        now = self.clock()
        dripping = [c for c in self.open if c.phase == "head" and now - c.since >= HEAD_GRACE]
        if dripping:
            return min(dripping, key=lambda c: c.since)
        return None
