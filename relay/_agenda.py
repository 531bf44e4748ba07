"""The broker's agenda: when each job must be looked at again.

A job's next time is ``job.due`` (the earliest of its deadlines that apply, set by the broker through
:meth:`Agenda.schedule`); the agenda keeps ``(due, order, job id)`` entries in a heap and the jobs on it
by id, so a job that ends is let go at once (an entry holds only its id). An entry whose time is no
longer its job's, or whose job has left the agenda, is stale: skipped when it comes up, and the heap is
rebuilt from the live jobs when stale entries outnumber them, so it stays the size of the jobs in
flight however fast they come and go. No I/O and no clock of its own: ``on_earlier(at)`` is called
when the earliest time comes before the one :meth:`next_deadline` last gave (the timer that sleeps until
then must wake sooner), the effect injected by the I/O shell.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

from ._jobs import Job

REBUILD_SLACK = 64
"""Stale entries tolerated beyond as many as there are live jobs before the heap is rebuilt."""


class Agenda:
    def __init__(self, on_earlier: Callable[[float], None] = lambda at: None) -> None:
        self.on_earlier = on_earlier
        self._heap: list[tuple[float, int, str]] = []
        """(due, order, job id): an entry holds no job, so a job that ended is freed at once."""
        self._order = itertools.count()
        self._jobs: dict[str, Job] = {}
        """The jobs on the agenda, by id."""
        self._told = math.inf
        """What :meth:`next_deadline` last answered (the timer sleeps until then)."""

    def schedule(self, job: Job, due: float) -> None:
        """Look at ``job`` again at ``due`` (``inf``: only when something happens to it)."""
        if due == job.due and job.id in self._jobs:
            return
        job.due = due
        if due == math.inf:
            self.drop(job)
            return
        self._jobs[job.id] = job
        heapq.heappush(self._heap, (due, next(self._order), job.id))
        self._compact()
        if due < self._told:
            self._told = due
            self.on_earlier(due)

    def drop(self, job: Job) -> None:
        """``job`` has ended (or waits for nothing timed): never look at it again."""
        job.due = math.inf
        self._jobs.pop(job.id, None)
        self._compact()

    def next_deadline(self) -> float:
        """The earliest time a job must be looked at (``inf``: none)."""
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        self._told = self._heap[0][0] if self._heap else math.inf
        return self._told

    def due(self, now: float) -> list[Job]:
        """The jobs whose time has come, earliest first, each once; they leave the agenda until scheduled
        again."""
        found: dict[str, Job] = {}
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._stale(entry):
                found[entry[2]] = self._jobs[entry[2]]
        for job in found.values():
            self.drop(job)
        return list(found.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._jobs) + REBUILD_SLACK:
            self._heap = [(j.due, next(self._order), j.id) for j in self._jobs.values()]
            heapq.heapify(self._heap)

    def _stale(self, entry: tuple[float, int, str]) -> bool:
        due, _, job_id = entry
        job = self._jobs.get(job_id)
        return job is None or job.due != due
