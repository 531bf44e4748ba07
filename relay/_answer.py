"""Following a job from the HTTP side: keep-alives and coalesced output.

:func:`follow` turns a job's event stream into the events an API encoder needs: it hands on text as
the broker batched it (all that arrived since the last read: a burst becomes one frame on the wire),
raises the job's failure, and yields :data:`KEEPALIVE` after ``keepalive_interval`` seconds of
silence so streams can send a comment. Every other rule of time (timeouts, graces, moving a job that
did not start, the continuation hold) is the broker's: it fails or moves the job and says so in the
job's events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from ._errors import RelayError
from ._jobs import Assigned, Failed, Job, JobEvent, Requeued, TextBatch


@dataclass(frozen=True)
class KeepAlive:
    pass


KEEPALIVE = KeepAlive()

AnswerEvent = Start | TextDelta | ToolCall | End | KeepAlive


async def follow(job: Job, keepalive_interval: float, catch_up: Callable[[], None]) -> AsyncIterator[AnswerEvent]:
    """Yield the answer's events until End. Raises RelayError for a failure (a timeout, nobody to serve
    it...) or a worker error (whose code is the error's kind). ``catch_up`` ticks the broker to now: a
    deadline that falls with a keep-alive (a grace as long as the keep-alive interval) goes first, so a
    stream that holds its status line gets its error as a status.

    The caller must call ``broker.cancel(job, ...)`` in a ``finally`` (it is a no-op once the job ended).
    """
    silent_until = anyio.current_time() + keepalive_interval
    while True:
        event: JobEvent | None = None
        with anyio.move_on_at(silent_until):
            event = await _next(job, wait=True)
        if event is None:
            catch_up()
            event = await _next(job, wait=False)
        if event is None:
            silent_until = anyio.current_time() + keepalive_interval
            yield KEEPALIVE
        elif isinstance(event, (Assigned, Requeued)):
            continue  # nothing for the caller
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, ErrorFrame):
            raise RelayError(event.code, event.message)
        else:
            silent_until = anyio.current_time() + keepalive_interval
            yield job.take(event) if isinstance(event, TextBatch) else event
            if isinstance(event, End):
                return


async def _next(job: Job, *, wait: bool) -> JobEvent | None:
    try:
        return await job.events.receive() if wait else job.events.receive_nowait()
    except anyio.WouldBlock:
        return None
    except anyio.EndOfStream:
        raise RelayError("answer_cut", "The answer ended unexpectedly.") from None
