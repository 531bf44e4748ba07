"""Following a job from the HTTP side: waits, timeouts, keep-alives, and coalesced output.

:func:`follow` turns a job's event stream into the events an API encoder needs. It enforces the two
relay timeouts (waiting for a worker, then waiting for the answer), yields :data:`KEEPALIVE` every
``keepalive_interval`` seconds of silence so streams can send a comment, and hands on text as the
broker batched it (all that arrived since the last read: a burst becomes one frame on the wire).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from ._broker import Assigned, Broker, Failed, Job, JobEvent, Requeued, TextBatch
from ._config import Config
from ._errors import RelayError

log = logging.getLogger("mcptb.relay")


@dataclass(frozen=True)
class KeepAlive:
    pass


KEEPALIVE = KeepAlive()

AnswerEvent = Start | TextDelta | ToolCall | End | KeepAlive


async def follow(job: Job, broker: Broker, config: Config) -> AsyncIterator[AnswerEvent]:
    """Yield the answer's events until End. Raises RelayError for a failure, a worker error (whose code
    is the error's kind) or a timeout.

    The caller must call ``broker.cancel(job, ...)`` in a ``finally`` (it is a no-op once the job ended).
    """
    loop = anyio.current_time
    deadline = loop() + config.queue_timeout
    start_by = float("inf")  # while assigned and not started: when to move it to another worker
    assigned = False
    unserved = _Unserved()
    while True:
        event: JobEvent | None = None
        if loop() >= start_by:
            reason = f"not started within {config.start_timeout:g} s (relay --start-timeout); moved to another worker"
            moved = broker.move_unstarted(job, reason)
            start_by = float("inf") if moved else loop() + config.start_timeout  # no other worker: try later
        look_again = unserved.check(job, broker, config, assigned)
        if not assigned and job.hold_until > loop():  # waiting for the agent that has the earlier turns
            look_again = min(look_again, job.hold_until)
        wake = min(
            config.keepalive_interval,
            max(0.0, deadline - loop()),
            max(0.0, start_by - loop()),
            max(0.0, look_again - loop()),
        )
        with anyio.move_on_after(wake):
            try:
                event = await job.events.receive()
            except anyio.EndOfStream:
                raise RelayError("answer_cut", "The answer ended unexpectedly.") from None
        if event is None:
            if loop() >= deadline:
                raise _timeout(assigned, config, broker)
            if not assigned and job.prefer is not None:
                broker.pump()  # a hold may have ended
            if loop() < start_by:
                yield KEEPALIVE
            continue
        if isinstance(event, Assigned):
            assigned = True
            deadline = loop() + config.request_timeout
            start_by = loop() + config.start_timeout
            continue
        start_by = float("inf")  # started (or failed, or back in the queue): nothing to move
        if isinstance(event, Requeued):
            assigned = False
            deadline = loop() + config.queue_timeout
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, ErrorFrame):
            raise RelayError(event.code, event.message)
        elif isinstance(event, TextBatch):
            yield job.take(event)
        else:
            yield event
            if isinstance(event, End):
                return


WARN_AFTER = 3.0
"""Seconds a job waits with nobody serving it before the relay logs a warning (see :class:`_Unserved`)."""

START_AGENT = (
    "Start an agent serving: Claude Code: run `mcptb-serve` (or the prompt /mcp__mcptb__serve in a session that "
    'has the server); Codex CLI: `codex exec "Serve MCP Token Bridge requests with the mcptb tools"`; Gemini CLI: '
    '`gemini -p "Serve MCP Token Bridge requests with the mcptb tools"` (README: serving). GET /health shows each '
    "server's agent as serving or away."
)


@dataclass
class _Unserved:
    """How long a queued job has had nobody to take it (``Broker.nobody_serving``). An agent between two
    ``next_request`` calls is away for a moment, so the relay warns only after :data:`WARN_AFTER`
    seconds and fails the job after ``--agent-grace``; both start over when somebody serves."""

    since: float | None = None
    warned: bool = False

    def check(self, job: Job, broker: Broker, config: Config, assigned: bool) -> float:
        """Update; raise the job's error once its grace is over; return when to look again."""
        now = anyio.current_time()
        why = None if assigned else broker.nobody_serving(job)
        if why is None:
            self.since, self.warned = None, False
            return float("inf")
        if self.since is None:
            self.since = now
        waited = now - self.since
        if waited >= config.agent_grace:
            log.warning("%s: nobody served it for %g s (--agent-grace): %s", job.id, config.agent_grace, why)
            grace = f"for {config.agent_grace:g} s, relay --agent-grace"
            raise RelayError("no_agent", f"{why} ({grace}). {START_AGENT}")
        warn_at = min(WARN_AFTER, config.agent_grace)
        if not self.warned and waited >= warn_at:
            self.warned = True
            log.warning(
                "%s waits for an agent: %s; it fails in %g s unless one starts",
                job.id,
                why,
                config.agent_grace - waited,
            )
        return self.since + (config.agent_grace if self.warned else warn_at)


def _timeout(assigned: bool, config: Config, broker: Broker) -> RelayError:
    if assigned:
        return RelayError(
            "answer_timeout",
            f"The MCP client did not finish answering within {config.request_timeout:g} s (relay --request-timeout).",
        )
    waited = f"No MCP server or agent picked up this request within {config.queue_timeout:g} s (relay --queue-timeout)"
    notes = broker.sampling_notes()
    if notes:  # the real cause: a client declares sampling but speaks the era without it
        return RelayError("queue_timeout", f"{waited}: {notes}. GET /health lists the servers.")
    return RelayError(
        "queue_timeout",
        f"{waited}: the connected servers were busy. GET /health lists the servers and their free slots.",
    )
