"""Which worker may take which job: the broker's routing rules, as functions of the job, a worker and
the connected workers.

- A job fits a worker that can use its tools (if it has any), that serves its model when some
  connected worker serves that model name (any other name goes to any worker), and that it was never
  taken from (``job.avoid``: not started in time).
- A continued conversation (its messages start with those of a request an agent worker answered)
  prefers that worker, and is held for it until ``job.hold_until`` (``--continuation-hold``) while its
  agent is serving (between two ``next_request`` calls): that agent has the earlier turns in its
  context and is shown only the new ones. Then any eligible worker takes it.
- Eligible: a free slot, it fits, and it is not held for another. Among the eligible, the preferred
  worker, else the one with the fewest requests in flight, so a worker that grants many slots and
  answers none (a client waiting for a consent click) cannot take everything while another idles.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._jobs import Job, Worker


def fits(job: Job, worker: Worker, workers: Mapping[str, Worker]) -> bool:
    if worker.id in job.avoid:
        return False
    if job.request.tools and not worker.info.tools:
        return False
    model = job.request.model
    if model and model not in worker.info.models:
        return not any(model in w.info.models for w in workers.values())
    return True


def held(job: Job, worker: Worker, workers: Mapping[str, Worker], now: float) -> bool:
    """``job`` waits for its preferred worker's agent rather than go to ``worker``."""
    if job.prefer is None or job.prefer == worker.id or now >= job.hold_until:
        return False
    preferred = workers.get(job.prefer)
    return preferred is not None and preferred.info.agent == "serving" and fits(job, preferred, workers)


def eligible(job: Job, worker: Worker, workers: Mapping[str, Worker], now: float) -> bool:
    return worker.free_slots > 0 and fits(job, worker, workers) and not held(job, worker, workers, now)


def choose(job: Job, workers: Mapping[str, Worker], now: float) -> Worker | None:
    """The worker to take ``job`` now, or None."""
    candidates = [w for w in workers.values() if eligible(job, w, workers, now)]
    if not candidates:
        return None
    preferred = [w for w in candidates if w.id == job.prefer]
    return preferred[0] if preferred else min(candidates, key=lambda w: len(w.jobs))
