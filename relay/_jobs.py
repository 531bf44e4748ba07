"""What the broker keeps, and what it tells the follower of a job.

A :class:`Job` is one request from submit to its end, a :class:`Worker` one connected MCP server and
the jobs it holds, a :class:`Caller` who sent a request as far as its headers tell; :data:`JobEvent` is
what a job's event stream carries to its follower (``_answer.follow``). Records only: the broker
(``_broker``) decides and changes them, synchronously; the follower reads a job and takes its text.

A job's state changes only through :meth:`Job.move`, along :data:`TRANSITIONS` (h11's ``_state.py`` is
the model): queued -> assigned (a worker took it) -> started (its answer began) -> done, back from
assigned to queued (handed back, moved, or its worker left before starting), and to done from any
state (answered, failed, cancelled). Any other move is a bug in the relay and raises
:class:`IllegalMove`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio

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


@dataclass(eq=False)
class TextBatch:
    """Text frames that arrived one after another, as one event: a worker may send thousands of tiny
    deltas in one write, and each becomes a part here rather than an event of its own. The follower
    takes the batch whole (``taken``); text arriving after that starts a new one."""

    request_id: str
    parts: list[str] = field(default_factory=list)
    taken: bool = False


JobEvent = Assigned | Requeued | Failed | TextBatch | AnswerFrame


UnservedKind = Literal["no_worker", "no_agent", "waiting_for_itself"]
"""Why a queued job has nobody to take it (each a :class:`~relay._errors.RelayError` kind)."""


@dataclass(frozen=True)
class Timing:
    """The broker's clock rules, in seconds (the relay's flags of the same names)."""

    queue_timeout: float = math.inf
    request_timeout: float = math.inf
    start_timeout: float = math.inf
    worker_grace: float = 0.0
    """A request waits this long for a worker when none is connected (0: refused at submit)."""
    agent_grace: float = math.inf
    continuation_hold: float = 0.0
    """A continued conversation waits this long for the agent that answered its earlier turns."""

    @classmethod
    def of(cls, settings: object) -> Timing:
        """The rules from an object with fields of the same names (the relay's ``Config``)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


NEVER = Timing()
"""Rules under which nothing times out and nothing waits for a worker (the broker's default: its tests
set what they test)."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as its headers tell: enough to recognise a Claude Code session whose
    model is this relay asking for an answer that only its own agent could give (it waits for itself)."""

    claude_code: bool = False
    """The ``user-agent`` is Claude Code's (``claude-cli/...``)."""
    session: str | None = None
    """Claude Code's ``x-claude-code-session-id``."""
    affinity: bytes | None = None
    """A digest of the caller's own session or conversation key (``relay._affinity.session_key``): its
    next request goes to the agent that served this one."""
    request_class: str | None = None
    """Claude Code's ``x-claude-code-request-class`` (``main``, ``subagent``, ``compaction``, ``auxiliary``...)."""


NO_CALLER = Caller()


JobState = Literal["queued", "assigned", "started", "done"]

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    "queued": frozenset({"assigned", "done"}),
    "assigned": frozenset({"started", "queued", "done"}),
    "started": frozenset({"done"}),
    "done": frozenset(),
}
"""The moves a job's state may make (see the module's header)."""


class IllegalMove(RuntimeError):
    """A job was asked to move where :data:`TRANSITIONS` does not go: a bug in the relay, never ignored."""


class JobEvents:
    """A job's events on their way to its follower: a bounded queue with one waiter. The broker puts
    (:meth:`put`, synchronous) and ends it (:meth:`end`); the follower takes what is there without
    waiting (:meth:`receive_nowait`: a burst of events is taken in one go, no scheduling round per
    event) and waits (:meth:`wait`) only when there is nothing, until an event comes or ``deadline``
    (the event loop's clock) passes. :meth:`close` is the follower's: it reads no more."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queue: deque[JobEvent] = deque()
        self._ended = False
        self._closed = False
        self._waiter: anyio.Event | None = None

    def put(self, event: JobEvent) -> str | None:
        """Queue ``event``; why the job must end if it cannot (its follower is gone or not reading)."""
        if self._closed:
            return "caller gone"
        if self._ended:
            return "job ended"
        if len(self._queue) >= self.capacity:
            return "caller not reading"
        self._queue.append(event)
        self._wake()
        return None

    def end(self) -> None:
        """No more events: the follower gets ``EndOfStream`` once it has taken those queued."""
        self._ended = True
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._wake()

    def receive_nowait(self) -> JobEvent:
        """The next event; ``WouldBlock`` if none is there yet, ``EndOfStream`` after the last,
        ``ClosedResourceError`` once closed."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._queue:
            return self._queue.popleft()
        raise anyio.EndOfStream if self._ended else anyio.WouldBlock

    async def wait(self, deadline: float) -> None:
        """Until an event (or the end) is there, or ``deadline`` passes."""
        if self._queue or self._ended or self._closed:
            return
        self._waiter = waiter = anyio.Event()
        try:
            with anyio.move_on_at(deadline):
                await waiter.wait()
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()


@dataclass(eq=False)
class Job:
    id: str
    request: NeutralRequest
    timeout: float
    line: bytes
    """The request frame, encoded once at submit."""
    events: JobEvents
    state: JobState = "queued"
    """Changed only by :meth:`move`."""
    worker: Worker | None = None
    worker_id: str = "-"
    """The last worker the job was assigned to (kept after the job ends, for the log)."""
    assignments: int = 0
    batch: TextBatch | None = None
    """The text batch in the event stream that text may still join (the last event queued, not taken)."""
    accepted: bool = False
    """Its worker said a model is working on it (an agent saw it): it is not moved for a slow start."""
    handed: int | None = None
    """Characters of it handed to a serving agent, as its worker said (None: none said)."""
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
    deadline: float = math.inf
    """When it fails if still where it is: queued, ``--queue-timeout`` after it was queued; taken, its
    worker has ``--request-timeout`` to finish."""
    start_by: float = math.inf
    """Taken and not started (nor accepted): when it moves to another worker (``--start-timeout``)."""
    nobody: UnservedKind | None = None
    """Queued: why nobody will take it (no MCP server, no agent serving), as last seen."""
    nobody_since: float = 0.0
    """Since when that has been so (its grace counts from here)."""
    warned: bool = False
    """The relay has logged that it waits for nobody."""
    submitted: float = 0.0
    """When it was submitted (the broker's clock): its age on the status page."""
    api: str = "-"
    """The route it came in on (the status page's in-flight list)."""
    waited: float | None = None
    """Seconds it waited in the queue before a worker first took it (None until then)."""
    due: float = math.inf
    """When the broker looks at it next (the earliest of the times above that apply: ``_agenda``)."""

    def view(self, now: float) -> JobView:
        return JobView(self.id, self.api, self.request.model or "-", self.state, now - self.submitted, self.worker_id)

    def move(self, to: JobState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalMove(f"{self.id}: {self.state} -> {to}")
        self.state = to

    def send(self, event: JobEvent) -> str | None:
        """The broker's side: queue ``event`` for the follower; why the job must end if it cannot."""
        return self.events.put(event)

    def add_text(self, text: str, max_unread: int) -> str | None:
        """The broker's side: answer text, joined to the batch the follower has not taken yet; why the job
        must end if its caller falls more than ``max_unread`` characters behind, or is gone."""
        self.unread += len(text)
        if self.unread > max_unread:
            return "caller not reading"
        if self.batch is not None and not self.batch.taken:
            self.batch.parts.append(text)
            return None
        self.batch = TextBatch(self.id, [text])
        return self.send(self.batch)

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


@dataclass(frozen=True)
class WorkerView:
    """One worker as :meth:`~relay._broker.Broker.snapshot` saw it."""

    id: str
    info: WorkerInfo
    free_slots: int
    in_flight: int
    connected_at: float


@dataclass(frozen=True)
class JobView:
    """One job as :meth:`~relay._broker.Broker.snapshot` saw it (no content: its id, the model asked)."""

    id: str
    api: str
    model: str
    state: JobState
    age: float
    """Seconds since it was submitted."""
    worker_id: str


@dataclass(frozen=True)
class Snapshot:
    """What the broker holds at one moment: its workers, and the jobs queued and in flight."""

    workers: tuple[WorkerView, ...]
    queue_depth: int
    in_flight: int
    jobs: tuple[JobView, ...] = ()

    def models(self) -> list[tuple[str, WorkerView]]:
        """Each model a worker offers, with the first worker that offers it."""
        seen: dict[str, WorkerView] = {}
        for worker in self.workers:
            for model in worker.info.models:
                seen.setdefault(model, worker)
        return list(seen.items())
