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
from ._jobs import Assigned, Failed, Job, JobEvent, JobEvents, Requeued, TextBatch


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
    events = job.events
    silent_until: float | None = None  # set when it starts waiting: silence counts from the last event
    while True:
        event = _take(events)
        if event is None:
            if silent_until is None:
                silent_until = anyio.current_time() + keepalive_interval
            await events.wait(silent_until)
            event = _take(events)
            if event is None and anyio.current_time() >= silent_until:
                catch_up()
                event = _take(events)
                if event is None:
                    silent_until = None
                    yield KEEPALIVE
                    continue
        if event is None or isinstance(event, (Assigned, Requeued)):
            continue  # nothing for the caller
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, ErrorFrame):
            raise RelayError(event.code, event.message)
        silent_until = None
        yield job.take(event) if isinstance(event, TextBatch) else event
        if isinstance(event, End):
            return


def _take(events: JobEvents) -> JobEvent | None:
    try:
        return events.receive_nowait()
    except anyio.WouldBlock:
        return None
    except anyio.EndOfStream:
        raise RelayError("answer_cut", "The answer ended unexpectedly.") from None
