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

from ._broker import Broker
from ._config import Config
from ._errors import RelayError
from ._jobs import Assigned, Failed, Job, JobEvent, Requeued, TextBatch, WorkersChanged
from ._unserved import sampling_notes, tools_refusal

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
    opened = loop()
    unserved = _Unserved(opened=opened)
    keepalive_at = opened + config.keepalive_interval  # after this much silence towards the caller
    while True:
        event: JobEvent | None = None
        if loop() >= start_by:
            reason = f"not started within {config.start_timeout:g} s (relay --start-timeout); moved to another worker"
            moved = broker.move_unstarted(job, reason)
            start_by = float("inf") if moved else loop() + config.start_timeout  # no other worker: try later
        look_again = unserved.check(job, broker, config, assigned)  # first: a grace ends before a keep-alive
        if loop() >= keepalive_at and loop() < start_by:
            keepalive_at = loop() + config.keepalive_interval
            yield KEEPALIVE
            continue
        if not assigned and job.hold_until > loop():  # waiting for the agent that has the earlier turns
            look_again = min(look_again, job.hold_until)
        wake = min(
            max(0.0, keepalive_at - loop()),
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
            continue
        if isinstance(event, WorkersChanged):
            continue  # look again at who could serve it (the loop's top)
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
            keepalive_at = loop() + config.keepalive_interval
            yield job.take(event)
        else:
            keepalive_at = loop() + config.keepalive_interval
            yield event
            if isinstance(event, End):
                return


SELF_SERVING_RETRY_AFTER = 300
"""``retry-after`` on "waiting for itself": Claude Code retries a 503 ten times over minutes even with
``x-should-retry: false``, but not past a ``retry-after`` over 60 s (its LLM gateway protocol)."""

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
    """How long a queued job has had nobody to take it (``Broker.unserved``): no worker connected (it
    waits ``--worker-grace`` for one: a serving session may be starting), or workers that answer only
    through an agent and no agent serving (an agent between two ``next_request`` calls is away for a
    moment: it waits ``--agent-grace``). The relay warns after :data:`WARN_AFTER` seconds and fails the
    job when the grace is over; the clock starts over when the reason changes or somebody serves."""

    opened: float = 0.0
    """When following began: a reason found at the first look counts from there (so a grace equal to the
    keep-alive interval ends first, and a stream's status line can still say 503)."""
    first: bool = True
    kind: str | None = None
    since: float = 0.0
    warned: bool = False

    def check(self, job: Job, broker: Broker, config: Config, assigned: bool) -> float:
        """Update; raise the job's error once its grace is over; return when to look again."""
        now = anyio.current_time()
        start, self.first = self.opened if self.first else now, False
        if assigned:
            self.kind, self.warned = None, False
            return float("inf")
        # the workers that came can never serve it (its tools)
        refusal = tools_refusal(job.request, broker.workers.values())
        if refusal is not None:
            raise refusal
        unserved = broker.unserved(job)
        if unserved is None:
            self.kind, self.warned = None, False
            return float("inf")
        kind, why = unserved
        if kind == "waiting_for_itself":  # nothing can change that by waiting
            log.warning("%s: %s", job.id, why)
            raise RelayError(kind, why, retry_after=SELF_SERVING_RETRY_AFTER)
        if kind != self.kind:
            self.kind, self.since, self.warned = kind, start, False
        grace, flag = (config.worker_grace, "worker") if kind == "no_worker" else (config.agent_grace, "agent")
        waited = now - self.since
        if waited >= grace:
            log.warning("%s: nobody served it for %g s (--%s-grace): %s", job.id, grace, flag, why)
            if kind == "no_worker":
                raise RelayError(kind, why)
            raise RelayError(kind, f"{why} (for {grace:g} s, relay --agent-grace). {START_AGENT}")
        warn_at = min(WARN_AFTER, grace)
        if not self.warned and waited >= warn_at:
            self.warned = True
            waits_for = "an MCP server to connect" if kind == "no_worker" else "an agent"
            log.warning(
                "%s waits for %s; it fails in %s s unless one %s",
                job.id,
                waits_for,
                _seconds(grace - waited),
                "connects" if kind == "no_worker" else f"starts: {why}",
            )
        return self.since + (grace if self.warned else warn_at)


def _seconds(value: float) -> str:
    """A duration for people: 11.9961 -> 12, 0.25 -> 0.25, 2.5 -> 2.5."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _timeout(assigned: bool, config: Config, broker: Broker) -> RelayError:
    if assigned:
        return RelayError(
            "answer_timeout",
            f"The MCP client did not finish answering within {config.request_timeout:g} s (relay --request-timeout).",
        )
    waited = f"No MCP server or agent picked up this request within {config.queue_timeout:g} s (relay --queue-timeout)"
    notes = sampling_notes(broker.workers.values())
    if notes:  # the real cause: a client declares sampling but speaks the era without it
        return RelayError("queue_timeout", f"{waited}: {notes}. GET /health lists the servers.")
    return RelayError(
        "queue_timeout",
        f"{waited}: the connected servers were busy. GET /health lists the servers and their free slots.",
    )
