"""The broker: which request goes to which worker, and where a worker's answer goes.

No I/O and no awaiting: the HTTP side calls :meth:`Broker.submit` / :meth:`Broker.cancel`, the
worker links call the ``on_*`` methods with decoded frames, and the broker reacts synchronously by
putting frames into a worker's outbound queue and events into a job's event stream (both
``send_nowait``). That keeps every state change atomic on both backends.

Rules:
- Pull-based: a job is assigned only against a slot a worker granted (``ready``), oldest job first,
  to the eligible worker (see :meth:`Broker._eligible`) with the fewest requests in flight, so a
  worker that grants many slots and answers none (a client waiting for a consent click) cannot take
  everything while another idles.
- A continued conversation (its messages start with those of a request an agent worker answered)
  goes to that worker when it has a free slot, and waits ``--continuation-hold`` seconds for it while
  its agent is serving (between two ``next_request`` calls): that agent has the earlier turns in its
  context and is shown only the new ones. Then any eligible worker takes it.
- A job its worker has not started within ``--start-timeout`` moves to another eligible worker, if
  one has a free slot (:meth:`Broker.move_unstarted`); the first worker is told ``cancel`` and never
  gets it back.
- A job assigned but not started goes back to the head of the queue when its worker hands it back
  (``release``, free of charge) or disappears (once; the second loss fails the job: ``worker_lost``).
- After ``start`` a job is never moved: the caller may already have output.
- Frames for a job that is finished, cancelled or not owned by the sending worker are ignored: a
  reply can never reach the wrong caller.
- Failures are :class:`~relay._errors.RelayError` kinds (``no_worker``, ``queue_full``...); how a
  caller sees them is decided on the HTTP side (``_errors.TABLE``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable

import anyio

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

from ._affinity import Affinity, conversation_of
from ._errors import RelayError
from ._jobs import NO_CALLER, WORKERS_CHANGED, Assigned, Caller, Failed, Job, JobEvent, Requeued, TextBatch, Worker
from ._unserved import UnservedKind, no_worker_message, nobody_serving, tools_refusal

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
        continuation_hold: float = 0.0,
        worker_grace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_queue = max_queue
        self.max_unread = max_unread
        """Characters of answer text a job may hold that its caller has not read yet (then it fails)."""
        self.continuation_hold = continuation_hold
        """Seconds a continued conversation waits for the agent that answered its earlier turns."""
        self.worker_grace = worker_grace
        """Seconds a request waits for a worker to connect when none is (0: refused at submit)."""
        self.clock = clock
        self._affinity = Affinity()
        """Which agent worker answered which conversation (see ``_affinity``)."""
        self.socket_path = socket_path
        self.workers: dict[str, Worker] = {}
        self.queue: deque[Job] = deque()
        self.stopping: str | None = None
        """Why the relay is stopping (then every job has failed and new ones are refused)."""

    # --- HTTP side ---------------------------------------------------------------------------

    def submit(self, job_id: str, request: NeutralRequest, timeout: float, caller: Caller = NO_CALLER) -> Job:
        """Queue a request. Raises RelayError when it cannot be served (no worker, queue full...)."""
        if self.stopping is not None:
            raise RelayError("relay_stopping", self.stopping)
        if not self.workers and not self.worker_grace:
            raise RelayError("no_worker", no_worker_message(self.socket_path, self.worker_grace))
        refusal = tools_refusal(request, self.workers.values())
        if refusal is not None:
            raise refusal
        if len(self.queue) >= self.max_queue:
            raise RelayError(
                "queue_full",
                f"The relay's queue is full ({self.max_queue} requests waiting for the model). Retry later.",
                retry_after=1,
            )
        try:  # encoded once, here: a request too large for the worker link is refused, never sent
            line = encode(RequestFrame(id=job_id, request=request, timeout=timeout))
        except FrameTooLarge:
            raise RelayError(
                "body_too_large",
                f"This request is larger than {MAX_LINE_BYTES} bytes once converted for the MCP server (the "
                "limit of the link between them); send a smaller one (fewer or smaller images, a shorter history).",
            ) from None
        send, receive = anyio.create_memory_object_stream[JobEvent](JOB_EVENT_BUFFER)
        job = Job(id=job_id, request=request, timeout=timeout, line=line, events_in=send, events=receive, caller=caller)
        if any("agent" in w.info.modes for w in self.workers.values()):
            self._find_earlier_turns(job)
        self.queue.append(job)
        self._pump()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """The caller is gone or gave up: forget the job and tell its worker. Idempotent."""
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

    def accept(self, worker: Worker, job_id: str) -> None:
        job = worker.jobs.get(job_id)
        if job is not None:
            job.accepted = True

    def move_unstarted(self, job: Job, reason: str) -> bool:
        """Take an assigned job its worker has not started from it and queue it for another worker;
        False (nothing changes) if no other eligible worker has a free slot."""
        worker = job.worker
        if job.state != "assigned" or worker is None or job.accepted:
            return False
        others = [w for w in self.workers.values() if w is not worker and self._eligible(job, w)]
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
        if isinstance(frame, Start):
            job.state = "started"
        elif job.state != "started" and not isinstance(frame, ErrorFrame):
            # text before start: accept it as an implicit start rather than lose the answer
            job.state = "started"
        if isinstance(frame, TextDelta):
            self._add_text(job, frame)
            return
        job.batch = None  # later text goes after this frame
        try:
            job.events_in.send_nowait(frame)
        except anyio.WouldBlock:
            log.warning("%s: caller is not reading its answer; giving up on it", job.id)
            self.cancel(job, "caller not reading")
            return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.cancel(job, "caller gone")
            return
        if isinstance(frame, (End, ErrorFrame)):
            worker.jobs.pop(job.id, None)
            self._close(job)
            if isinstance(frame, End) and "agent" in worker.info.modes:
                self._remember_answered(job, worker)

    def pump(self) -> None:
        """Assign what can be assigned now (a follower calls it when a job's hold ends)."""
        self._pump()

    # --- internals ---------------------------------------------------------------------------

    def _find_earlier_turns(self, job: Job) -> None:
        job.conversation, worker_id = self._affinity.earlier_turns(job.request.messages)
        if worker_id is not None:
            job.prefer, job.hold_until = worker_id, self.clock() + self.continuation_hold

    def _remember_answered(self, job: Job, worker: Worker) -> None:
        if job.conversation is None:
            job.conversation = conversation_of(job.request.messages)
        if job.conversation is None:
            return
        self._affinity.remember(job.conversation, worker.id)

    def _held(self, job: Job, worker: Worker) -> bool:
        """``job`` waits for its preferred worker's agent (briefly: it is between two next_request calls)."""
        if job.prefer is None or job.prefer == worker.id or self.clock() >= job.hold_until:
            return False
        preferred = self.workers.get(job.prefer)
        return preferred is not None and preferred.info.agent == "serving" and self._fits(job, preferred)

    def _add_text(self, job: Job, frame: TextDelta) -> None:
        job.unread += len(frame.text)
        if job.unread > self.max_unread:
            log.warning("%s: caller is not reading its answer; giving up on it", job.id)
            self.cancel(job, "caller not reading")
            return
        batch = job.batch
        if batch is not None and not batch.taken:
            batch.parts.append(frame.text)
            return
        batch = job.batch = TextBatch(job.id, [frame.text])
        try:
            job.events_in.send_nowait(batch)
        except anyio.WouldBlock:
            log.warning("%s: caller is not reading its answer; giving up on it", job.id)
            self.cancel(job, "caller not reading")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.cancel(job, "caller gone")

    def unserved(self, job: Job) -> tuple[UnservedKind, str] | None:
        """For a queued job: why nobody will take it now, or None. ``no_worker``: no MCP server is
        connected. ``no_agent``: each worker it may go to answers only through an agent (no background
        sampling) and no agent is serving there; ``waiting_for_itself`` when one of those is the Claude Code
        session that sent the request (its model is this relay: it can serve nothing until answered)."""
        if not self.workers:
            return "no_worker", no_worker_message(self.socket_path, self.worker_grace)
        return nobody_serving(job, [w for w in self.workers.values() if self._fits(job, w)])

    def _eligible(self, job: Job, worker: Worker) -> bool:
        return worker.free_slots > 0 and self._fits(job, worker) and not self._held(job, worker)

    def _fits(self, job: Job, worker: Worker) -> bool:
        """Tools need a worker that can use them; a model name some worker serves pins the job to
        those workers; any other name goes to any worker."""
        if worker.id in job.avoid:
            return False
        if job.request.tools and not worker.info.tools:
            return False
        model = job.request.model
        if model and model not in worker.info.models:
            return not any(model in w.info.models for w in self.workers.values())
        return True

    def _pump(self) -> None:
        for job in list(self.queue):
            eligible = [w for w in self.workers.values() if self._eligible(job, w)]
            if not eligible:
                continue
            preferred = [w for w in eligible if w.id == job.prefer]
            worker = preferred[0] if preferred else min(eligible, key=lambda w: len(w.jobs))
            if not worker.send(job.line):
                continue
            self.queue.remove(job)
            worker.free_slots -= 1
            worker.jobs[job.id] = job
            job.worker = worker
            job.worker_id = worker.id
            job.state = "assigned"
            job.assignments += 1
            self._emit(job, Assigned(worker.id))

    def _requeue(self, job: Job) -> None:
        job.state = "queued"
        job.worker = None
        self.queue.appendleft(job)
        self._emit(job, Requeued())
        self._pump()

    def _workers_changed(self) -> None:
        for job in self.queue:
            self._emit(job, WORKERS_CHANGED)

    def _emit(self, job: Job, event: JobEvent) -> None:
        try:
            job.events_in.send_nowait(event)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _fail(self, job: Job, error: RelayError) -> None:
        self._emit(job, Failed(error))
        self._close(job)

    def _close(self, job: Job) -> None:
        job.state = "done"
        job.worker = None
        job.events_in.close()

    # --- views -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self.workers.values())

    def models(self) -> list[tuple[str, Worker]]:
        seen: dict[str, Worker] = {}
        for worker in self.workers.values():
            for model in worker.info.models:
                seen.setdefault(model, worker)
        return list(seen.items())
