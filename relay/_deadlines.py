"""The broker's clock rules: what is due for one job at a given time, as a verdict the broker carries out.

- Queued: it fails at its deadline (``--queue-timeout``, counted again from each re-queue), and at
  once when its tools are ones no connected client can use (the workers changed, or the one it was
  with left). While
  nobody can take it - no MCP server connected, or only agent-mode servers and no agent serving - it
  waits that reason's grace (``--worker-grace``, ``--agent-grace``), counted from when the reason was
  first seen (it starts over when the reason changes or somebody can serve), with a warning in the log
  after :data:`~relay._unserved.WARN_AFTER` seconds; then it fails with that reason. The caller's own
  Claude Code session being the only one that could serve it fails it at once: waiting cannot help.
  A continued conversation's hold ends at ``hold_until`` (then any worker may take it).
- Taken: it fails at its deadline (``--request-timeout``); not started, nor accepted by an agent, it
  moves to another worker at ``start_by`` (``--start-timeout``).

Functions of the job, the time and what the broker says about the workers; they update the job's
record of who it waits for (and log the wait's warning), nothing else.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ._errors import RelayError
from ._jobs import Job, Timing, UnservedKind, Worker
from ._unserved import SELF_SERVING_RETRY_AFTER, queue_timeout_error, tools_refusal, waiting_for_nobody


@dataclass(frozen=True)
class Fail:
    error: RelayError


@dataclass(frozen=True)
class Move:
    """Take it from a worker that has not started it, for another (if one can take it now)."""

    reason: str


@dataclass(frozen=True)
class Later:
    at: float
    """When to look at it again."""
    hold_ended: bool = False
    """Its continuation hold is over: the queue may be assigned again."""


Verdict = Fail | Move | Later


def queued(
    job: Job, now: float, timing: Timing, unserved: tuple[UnservedKind, str] | None, workers: Collection[Worker]
) -> Verdict:
    if now >= job.deadline:
        return Fail(queue_timeout_error(timing.queue_timeout, workers))
    refusal = tools_refusal(job.request, workers)  # the workers connected now can never serve it
    if refusal is not None:
        return Fail(refusal)
    at = job.deadline
    if unserved is None:
        job.nobody, job.warned = None, False
    else:
        kind, why = unserved
        if kind == "waiting_for_itself":  # nothing can change that by waiting
            return Fail(RelayError(kind, why, retry_after=SELF_SERVING_RETRY_AFTER))
        if kind != job.nobody:
            job.nobody, job.nobody_since, job.warned = kind, now, False
        grace = timing.worker_grace if kind == "no_worker" else timing.agent_grace
        error, look_again = waiting_for_nobody(job, kind, why, grace, now)
        if error is not None:
            return Fail(error)
        at = min(at, look_again)
    if job.prefer is None:
        return Later(at)
    if job.hold_until > now:
        return Later(min(at, job.hold_until))
    return Later(at, hold_ended=True)


def taken(job: Job, now: float, timing: Timing) -> Verdict:
    if now >= job.deadline:
        limit = timing.request_timeout
        message = f"The MCP client did not finish answering within {limit:g} s (relay --request-timeout)."
        return Fail(RelayError("answer_timeout", message))
    if job.state != "assigned" or job.accepted:
        return Later(job.deadline)
    if now >= job.start_by:
        limit = timing.start_timeout
        return Move(f"not started within {limit:g} s (relay --start-timeout); moved to another worker")
    return Later(min(job.deadline, job.start_by))
