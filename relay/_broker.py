"""The broker: which request goes to which worker, and where a worker's answer goes.

No I/O and no awaiting: the HTTP side calls :meth:`Broker.submit` / :meth:`Broker.cancel`, the
worker links call the ``on_*`` methods with decoded frames, and the broker reacts synchronously by
putting frames into a worker's outbound queue and events into a job's events, neither waiting. That
keeps every state change atomic on both backends.

Rules:
- Pull-based: a job is assigned only against a slot a worker granted (``ready``), oldest job first,
  to the worker ``_eligibility`` chooses (least busy, or the one a continued conversation prefers).
- A job its worker has not started within ``--start-timeout`` moves to another eligible worker, if
  one has a free slot (on a :meth:`Broker.tick`); the first worker is told ``cancel`` and never
  gets it back.
- A job assigned but not started goes back to the head of the queue when its worker hands it back
  (``release``, free of charge) or disappears (once; the second loss fails the job: ``worker_lost``).
- After ``start`` a job is never moved: the caller may already have output.
- Frames for a job that is finished, cancelled or not owned by the sending worker are ignored: a
  reply can never reach the wrong caller.
- Failures are :class:`~relay._errors.RelayError` kinds (``no_worker``, ``queue_full``...); how a
  caller sees them is decided on the HTTP side (``_errors.TABLE``).

Time is the broker's too: each job carries its deadlines and graces, :meth:`Broker.next_deadline`
says when the next falls due, and :meth:`Broker.tick` carries out what the clock rules (``_deadlines``)
decide for each job due: fail it, move it, assign the queue again. One timer task drives it
(``_timer``); race tests are sequences of calls with a fake clock. A queued job is looked at again at
once when the workers change.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable

from shared_protocol import (
    MAX_LINE_BYTES,
    AnswerFrame,
    Cancel,
    End,
    ErrorFrame,
    FrameTooLarge,
    NeutralRequest,
    RequestFrame,
    Start,
    TextDelta,
    WorkerInfo,
    encode,
)

from . import _deadlines
from ._affinity import Affinity, conversation_of
from ._agenda import Agenda
from ._eligibility import choose, eligible, fits
from ._errors import RelayError
from ._jobs import (
    NEVER,
    NO_CALLER,
    Assigned,
    Caller,
    Failed,
    Job,
    JobEvent,
    JobEvents,
    Requeued,
    Snapshot,
    Timing,
    UnservedKind,
    Worker,
    WorkerView,
)
from ._unserved import no_worker_message, nobody_serving, tools_refusal

log = logging.getLogger("mcptb.relay")

JOB_EVENT_BUFFER = 4096
"""Events buffered per job before the caller is considered stuck (the job then fails). Text does not
count frame by frame: consecutive text frames share one :class:`TextBatch`."""

MAX_SLOTS = 1024
"""Most free slots one worker may hold: bounds what a confused worker can claim."""

MAX_ASSIGNMENTS = 2
"""A job is tried on at most this many workers that vanish before starting it."""


class Broker:
    def __init__(
        self,
        *,
        max_queue: int,
        socket_path: str,
        max_unread: int = 8 * 1024 * 1024,
        timing: Timing = NEVER,
        clock: Callable[[], float] = time.monotonic,
        on_earlier: Callable[[float], None] = lambda at: None,
    ) -> None:
        self.max_queue = max_queue
        self.max_unread = max_unread
        """Characters of answer text a job may hold that its caller has not read yet (then it fails)."""
        self.timing = timing
        self.clock = clock
        self.agenda = Agenda(on_earlier)
        """When each job is looked at next (``on_earlier``: the timer must wake sooner)."""
        self._affinity = Affinity()
        """Which agent worker answered which conversation (see ``_affinity``)."""
        self.socket_path = socket_path
        self.workers: dict[str, Worker] = {}
        self.queue: deque[Job] = deque()
        self.stopping: str | None = None
        """Why the relay is stopping (then every job has failed and new ones are refused)."""

    # --- HTTP side ---------------------------------------------------------------------------

    def submit(
        self, job_id: str, request: NeutralRequest, timeout: float, caller: Caller = NO_CALLER, api: str = "-"
    ) -> Job:
        """Queue a request. Raises RelayError when it cannot be served (no worker, queue full...)."""
        if (refused := self.refusal(request)) is not None:
            raise refused
        try:  # encoded once, here: a request too large for the worker link is refused, never sent
            line = encode(RequestFrame(id=job_id, request=request, timeout=timeout))
        except FrameTooLarge:
            raise RelayError(
                "body_too_large",
                f"This request is larger than {MAX_LINE_BYTES} bytes once converted for the MCP server (the "
                "limit of the link between them); send a smaller one (fewer or smaller images, a shorter history).",
            ) from None
        job = Job(job_id, request, timeout, line, JobEvents(JOB_EVENT_BUFFER), caller=caller, api=api)
        now = job.submitted = self.clock()
        side = caller.request_class == "auxiliary"  # a session title, a classifier: any worker, no context needed
        if not side and any("agent" in w.info.modes for w in self.workers.values()):
            self._find_earlier_turns(job, now)
        job.deadline = now + self.timing.queue_timeout
        self.queue.append(job)
        self._pump()
        if job.state == "queued":
            verdict = self._review(job, now)
            if isinstance(verdict, _deadlines.Fail):  # at once (waiting for itself): a status, not an event
                job.events.close()
                raise verdict.error
        return job

    def refusal(self, request: NeutralRequest) -> RelayError | None:
        """Why ``request`` cannot be queued now, if it cannot (the app asks before it fetches images)."""
        if self.stopping is not None:
            return RelayError("relay_stopping", self.stopping)
        if not self.workers and not self.timing.worker_grace:
            return RelayError("no_worker", no_worker_message(self.socket_path, 0))
        if (refusal := tools_refusal(request, self.workers.values())) is not None or len(self.queue) < self.max_queue:
            return refusal
        message = f"The relay's queue is full ({self.max_queue} requests waiting for the model). Retry later."
        return RelayError("queue_full", message, retry_after=1)

    def cancel(self, job: Job, reason: str) -> None:
        """The caller is gone or gave up (or has read the whole answer): forget the job, tell its worker,
        and close the caller's end of the job's events. Idempotent."""
        job.events.close()
        self._drop(job, reason)

    def _drop(self, job: Job, reason: str) -> None:
        """Forget the job and tell its worker; its follower, if still there, reads to the end of its
        events (and so learns the answer was cut)."""
        if job.state == "done":
            return
        if job.state == "queued":
            self.queue.remove(job)
        elif job.worker is not None:
            job.worker.jobs.pop(job.id, None)
            job.worker.send(encode(Cancel(id=job.id, reason=reason)))
        self._close(job)

    # --- worker side -------------------------------------------------------------------------

    def add_worker(self, info: WorkerInfo, send: Callable[[bytes], bool]) -> Worker:
        worker = Worker(id="w_" + secrets.token_hex(6), info=info, send=send)
        self.workers[worker.id] = worker
        self._workers_changed()
        return worker

    def update_worker(self, worker: Worker, info: WorkerInfo) -> None:
        worker.info = info
        self._pump()
        self._workers_changed()

    def grant(self, worker: Worker, slots: int) -> None:
        worker.free_slots = min(worker.free_slots + slots, MAX_SLOTS)
        self._pump()

    def withdraw(self, worker: Worker, slots: int) -> None:
        worker.free_slots = max(0, worker.free_slots - slots)

    def release(self, worker: Worker, job_id: str) -> None:
        job = worker.jobs.pop(job_id, None)
        if job is None:
            return
        if job.state == "started":  # output may have reached the caller: it cannot go elsewhere
            log.warning("%s: worker %s handed back a request it had started", job.id, worker.id)
            message = (
                "The MCP server broke the bridge's protocol: it handed this request back after it had started "
                "answering it (a bug in that server; upgrade both sides)."
            )
            self._fail(job, RelayError("protocol_violation", message))
            return
        job.assignments -= 1  # handing back is free: the worker never started it
        self._requeue(job)

    def stop(self, message: str) -> None:
        """The relay is stopping: fail every job (its caller gets ``message`` in its API's shape, a
        stream its error event and end), tell the workers, refuse new jobs."""
        self.stopping = message
        for job in list(self.queue):
            self.queue.remove(job)
            self._fail(job, RelayError("relay_stopping", message))
        for worker in self.workers.values():
            for job in list(worker.jobs.values()):
                worker.send(encode(Cancel(id=job.id, reason="the relay is stopping")))
                self._fail(job, RelayError("relay_stopping", message))
            worker.jobs.clear()

    def accept(self, worker: Worker, job_id: str, handed: int | None) -> None:
        if (job := worker.jobs.get(job_id)) is not None:
            job.accepted = True  # handed: summed, as an agent that saw it before another took it over cost too
            job.handed = job.handed if handed is None else (job.handed or 0) + handed
            self.agenda.schedule(job, job.deadline)  # it is not moved for a slow start any more

    # --- time ---------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When :meth:`tick` has something to do next (``inf``: only when something happens)."""
        return self.agenda.next_deadline()

    def catch_up(self) -> None:
        """Tick to the broker's clock now (a follower does before it reports silence)."""
        self.tick(self.clock())

    def tick(self, now: float) -> None:
        """Fail, move or assign what is due at ``now``."""
        held = False
        for job in self.agenda.due(now):
            try:
                verdict = self._review(job, now)
            except Exception:  # a bug: that job fails, loudly; the others and the timer go on
                log.exception("%s: internal error applying its deadlines", job.id)
                self._fail_bug(job)
                continue
            held = held or (isinstance(verdict, _deadlines.Later) and verdict.hold_ended)
        if held:
            self._pump()

    def _review(self, job: Job, now: float) -> _deadlines.Verdict | None:
        """Carry out the clock rules' verdict on ``job`` (``_deadlines``) and return it."""
        if job.state == "done":
            return None
        if job.state == "queued":
            verdict = _deadlines.queued(job, now, self.timing, self.unserved(job), self.workers.values())
        else:
            verdict = _deadlines.taken(job, now, self.timing)
        if isinstance(verdict, _deadlines.Fail):
            if verdict.error.kind == "waiting_for_itself":
                log.warning("%s: %s", job.id, verdict.error.message)
            if job.state == "queued":
                self.queue.remove(job)
                self._fail(job, verdict.error)
            else:
                self._give_up(job, verdict.error)
        elif isinstance(verdict, _deadlines.Move):
            if not self._move_unstarted(job, verdict.reason):
                job.start_by = now + self.timing.start_timeout  # no other worker can take it: try again later
                self.agenda.schedule(job, min(job.deadline, job.start_by))
        else:
            self.agenda.schedule(job, verdict.at)
        return verdict

    def _move_unstarted(self, job: Job, reason: str) -> bool:
        """Take an assigned job its worker has not started from it and queue it for another worker;
        False (nothing changes) if no other eligible worker has a free slot."""
        worker = job.worker
        if job.state != "assigned" or worker is None or job.accepted:
            return False
        now = self.clock()
        others = [w for w in self.workers.values() if w is not worker and eligible(job, w, self.workers, now)]
        if not others:
            return False
        log.warning("%s: worker %s did not start it; moving it to another worker", job.id, worker.id)
        worker.jobs.pop(job.id, None)
        worker.send(encode(Cancel(id=job.id, reason=reason)))
        job.avoid.add(worker.id)
        job.assignments -= 1  # not lost: taken away
        self._requeue(job)
        return True

    def remove_worker(self, worker: Worker) -> None:
        if self.workers.pop(worker.id, None) is None:
            return
        for job in list(worker.jobs.values()):
            if job.state == "assigned" and job.assignments < MAX_ASSIGNMENTS:
                log.warning("%s: worker %s left before starting it; re-queued", job.id, worker.id)
                self._requeue(job)
            else:
                self._fail(
                    job,
                    RelayError(
                        "worker_lost",
                        "The MCP server answering this request disconnected before it finished "
                        "(the MCP client was closed or restarted).",
                    ),
                )
        worker.jobs.clear()
        self._workers_changed()
        self._pump()  # a job pinned to a model only the departed worker served may go anywhere now

    def on_answer(self, worker: Worker, frame: AnswerFrame) -> None:
        job = worker.jobs.get(frame.id) if frame.id else None
        if job is None:
            log.debug(
                "worker %s: %s frame for unknown or finished request %s ignored",
                worker.id,
                frame.type,
                frame.id,
            )
            return
        if job.state == "assigned" and not isinstance(frame, ErrorFrame):
            if not isinstance(frame, Start):  # out of order: taken as its start rather than lose the answer
                log.warning("%s: worker %s sent %s before start; taken as started", job.id, worker.id, frame.type)
            job.move("started")
            job.start_by = math.inf
            self.agenda.schedule(job, job.deadline)
        if isinstance(frame, TextDelta):
            lost = job.add_text(frame.text, self.max_unread)
        else:
            job.batch = None  # later text goes after this frame
            lost = job.send(frame)
        if lost is not None:
            if lost == "caller not reading":
                log.warning("%s: caller is not reading its answer; giving up on it", job.id)
            self._drop(job, lost)
        elif isinstance(frame, (End, ErrorFrame)):
            worker.jobs.pop(job.id, None)
            self._close(job)
            if isinstance(frame, End) and "agent" in worker.info.modes:
                self._remember_answered(job, worker)

    # --- internals ---------------------------------------------------------------------------

    def _find_earlier_turns(self, job: Job, now: float) -> None:
        job.conversation, worker_id = self._affinity.earlier_turns(job.request.messages, job.caller.affinity)
        if worker_id is not None:
            job.prefer, job.hold_until = worker_id, now + self.timing.continuation_hold

    def _remember_answered(self, job: Job, worker: Worker) -> None:
        if job.conversation is None:
            job.conversation = conversation_of(job.request.messages)
        main_line = job.caller.request_class in (None, "main", "compaction")  # not a subagent's, nor a title
        self._affinity.remember(job.conversation, worker.id, job.caller.affinity if main_line else None)

    def unserved(self, job: Job) -> tuple[UnservedKind, str] | None:
        """For a queued job: why nobody will take it now, or None. ``no_worker``: no MCP server is
        connected. ``no_agent``: each worker it may go to answers only through an agent (no background
        sampling) and no agent is serving there; ``waiting_for_itself`` when one of those is the Claude Code
        session that sent the request (its model is this relay: it can serve nothing until answered)."""
        if not self.workers:
            return "no_worker", no_worker_message(self.socket_path, self.timing.worker_grace)
        return nobody_serving(job, [w for w in self.workers.values() if fits(job, w, self.workers)])

    def _pump(self) -> None:
        if not self.queue or not any(w.free_slots for w in self.workers.values()):
            return  # nothing to assign, or nobody to take it
        now = self.clock()
        for job in list(self.queue):
            worker = choose(job, self.workers, now)
            if worker is None or not worker.send(job.line):
                continue
            self.queue.remove(job)
            worker.free_slots -= 1
            worker.jobs[job.id] = job
            job.worker = worker
            job.worker_id = worker.id
            job.move("assigned")
            job.waited = job.waited if job.assignments else now - job.submitted
            job.assignments += 1
            job.deadline, job.start_by = now + self.timing.request_timeout, now + self.timing.start_timeout
            job.nobody, job.warned = None, False
            self.agenda.schedule(job, min(job.deadline, job.start_by))
            self._emit(job, Assigned(worker.id))

    def _requeue(self, job: Job) -> None:
        job.move("queued")
        job.worker = None
        job.accepted, job.start_by = False, math.inf
        now = self.clock()
        job.deadline = now + self.timing.queue_timeout
        self.queue.appendleft(job)
        self._emit(job, Requeued())
        self._pump()
        if job.state == "queued":
            self._review(job, now)

    def _workers_changed(self) -> None:
        """Who could serve a queued job changed: look at each again (one whose tools nobody connected can
        use is refused; a grace starts over when its reason changes)."""
        now = self.clock()
        for job in list(self.queue):
            self._review(job, now)

    def _give_up(self, job: Job, error: RelayError) -> None:
        """A taken job's time is up: its worker is told to stop, its caller gets ``error``."""
        if job.worker is not None:
            job.worker.jobs.pop(job.id, None)
            job.worker.send(encode(Cancel(id=job.id, reason=f"the relay gave up: {error.message}")))
        self._fail(job, error)

    def _fail_bug(self, job: Job) -> None:
        if job in self.queue:
            self.queue.remove(job)
        if job.worker is not None:
            job.worker.jobs.pop(job.id, None)
            job.worker.send(encode(Cancel(id=job.id, reason="internal relay error")))
        if job.state != "done":  # every other state may end
            self._fail(job, RelayError("relay_bug", "Internal relay error (see the relay's log)."))

    def _emit(self, job: Job, event: JobEvent) -> None:
        job.send(event)  # a caller that cannot take it is gone or stuck, which its own end deals with

    def _fail(self, job: Job, error: RelayError) -> None:
        self._emit(job, Failed(error))
        self._close(job)

    def _close(self, job: Job) -> None:
        job.move("done")
        job.worker = None
        self.agenda.drop(job)
        job.events.end()

    # --- views -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self.workers.values())

    def snapshot(self) -> Snapshot:
        """What the broker holds now, for ``/health``."""
        workers = tuple(
            WorkerView(w.id, w.info, w.free_slots, len(w.jobs), w.connected_at) for w in self.workers.values()
        )
        taken = [job for w in self.workers.values() for job in w.jobs.values()]
        jobs = tuple(job.view(self.clock()) for job in (*self.queue, *taken))
        return Snapshot(workers, queue_depth=len(self.queue), in_flight=self.in_flight, jobs=jobs)
