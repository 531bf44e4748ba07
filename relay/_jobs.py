"""What the broker keeps, and what it tells the follower of a job.

A :class:`Job` is one request from submit to its end, a :class:`Worker` one connected MCP server and
the jobs it holds, a :class:`Caller` who sent a request as far as its headers tell; :data:`JobEvent` is
what a job's event stream carries to its follower (``_answer.follow``). Records only: the broker
(``_broker``) decides and changes them, synchronously; the follower reads a job and takes its text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import AnswerFrame, NeutralRequest, TextDelta, WorkerInfo

from ._errors import RelayError


@dataclass(frozen=True)
class Assigned:
    worker_id: str


@dataclass(frozen=True)
class Requeued:
    """The job's worker handed it back or left before answering; it waits for a worker again."""


@dataclass(frozen=True)
class Failed:
    error: RelayError


@dataclass(frozen=True)
class WorkersChanged:
    """A worker connected or said more about itself: a queued job's follower looks again at who could
    serve it (a request with tools that the newcomer can never serve is refused at once)."""


@dataclass(eq=False)
class TextBatch:
    """Text frames that arrived one after another, as one event: a worker may send thousands of tiny
    deltas in one write, and each becomes a part here rather than an event of its own. The follower
    takes the batch whole (``taken``); text arriving after that starts a new one."""

    request_id: str
    parts: list[str] = field(default_factory=list)
    taken: bool = False


WORKERS_CHANGED = WorkersChanged()

JobEvent = Assigned | Requeued | Failed | WorkersChanged | TextBatch | AnswerFrame


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as its headers tell: enough to recognise a Claude Code session whose
    model is this relay asking for an answer that only its own agent could give (it waits for itself)."""

    claude_code: bool = False
    """The ``user-agent`` is Claude Code's (``claude-cli/...``)."""
    session: str | None = None
    """Claude Code's ``x-claude-code-session-id``."""


NO_CALLER = Caller()


@dataclass(eq=False)
class Job:
    id: str
    request: NeutralRequest
    timeout: float
    line: bytes
    """The request frame, encoded once at submit."""
    events_in: MemoryObjectSendStream[JobEvent]
    events: MemoryObjectReceiveStream[JobEvent]
    state: Literal["queued", "assigned", "started", "done"] = "queued"
    worker: Worker | None = None
    worker_id: str = "-"
    """The last worker the job was assigned to (kept after the job ends, for the log)."""
    assignments: int = 0
    batch: TextBatch | None = None
    """The text batch in the event stream that text may still join (the last event queued, not taken)."""
    accepted: bool = False
    """Its worker said a model is working on it (an agent saw it): it is not moved for a slow start."""
    avoid: set[str] = field(default_factory=set)
    """Workers this job was taken away from (not started in time): never assigned to them again."""
    unread: int = 0
    """Characters of text queued that the caller has not taken yet (bounded by ``Broker.max_unread``)."""
    conversation: bytes | None = None
    """Digest of its whole message list, when an agent worker may serve it (see ``_affinity``)."""
    prefer: str | None = None
    """The worker that answered the conversation this job continues."""
    hold_until: float = 0.0
    """Until when it waits for ``prefer``'s agent rather than go to another worker."""
    caller: Caller = NO_CALLER

    def take(self, batch: TextBatch) -> TextDelta:
        """The follower's side: the batch's text, which no later text will join."""
        batch.taken = True
        text = "".join(batch.parts)
        self.unread -= len(text)
        return TextDelta(id=self.id, text=text)


@dataclass(eq=False)
class Worker:
    id: str
    info: WorkerInfo
    send: Callable[[bytes], bool]
    """Queue an encoded frame for the worker; False if its outbound queue is full (the link is then dropped)."""
    connected_at: float = field(default_factory=time.time)
    free_slots: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)
