"""Why nobody serves a request, in words that say what to do about it.

The broker decides which connected workers a request may go to and whether one of them takes it;
this module says why none does, for the error its caller gets and for the relay's log: no MCP server
connected (the registration line names this relay's socket), a request with tools that no connected
client can use, workers that answer only through an agent while no agent is serving, and the Claude
Code session that would serve the request being the one that sent it (it waits for itself).
Functions of the workers as they are at the moment; no state (but a queued job's record of its wait,
which :func:`waiting_for_nobody` updates with the warning it logs).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Collection, Iterable

from shared_protocol import NeutralRequest, default_socket_path

from ._config import server_command
from ._errors import RelayError
from ._jobs import Job, UnservedKind, Worker

log = logging.getLogger("mcptb.relay")

SELF_SERVING_RETRY_AFTER = 300
"""``retry-after`` on "waiting for itself": Claude Code retries a 503 ten times over minutes even with
``x-should-retry: false``, but not past a ``retry-after`` over 60 s (its LLM gateway protocol)."""

WARN_AFTER = 3.0
"""Seconds a job waits with nobody serving it before the relay logs a warning."""

START_AGENT = (
    "Start an agent serving: Claude Code: run `mcptb-serve` (or the prompt /mcp__mcptb__serve in a session that "
    'has the server); Codex CLI: `codex exec "Serve MCP Token Bridge requests with the mcptb tools"`; Gemini CLI: '
    '`gemini -p "Serve MCP Token Bridge requests with the mcptb tools"` (README: serving). GET /health shows each '
    "server's agent as serving or away."
)

SELF_SERVING = (
    "This request comes from the Claude Code session that serves this relay (its x-claude-code-session-id is "
    "that of the session whose MCP server would answer it): its model is this relay, so its agent cannot call "
    "next_request until this request is answered - it is waiting for itself"
)
SELF_SERVING_FIX = (
    "Serve from a session that uses your own Claude login (start mcptb-serve, or claude, without "
    "ANTHROPIC_BASE_URL pointing at this relay), or point this client at another model"
)


def no_worker_message(socket_path: str, worker_grace: float) -> str:
    waited = f" within {worker_grace:g} s (relay --worker-grace)" if worker_grace else ""
    socket = "" if socket_path == default_socket_path() else f" --socket {shlex.quote(socket_path)}"
    command = shlex.quote(server_command())
    return (
        f"No MCP server connected to this relay{waited}, so there is no model to answer. Serve with Claude "
        "Code: run `mcptb-serve` (it keeps a session serving). Or register the bridge's MCP server with your "
        f"MCP client for every directory: `claude mcp add --scope user mcptb -- {command}{socket}` "
        "(Codex CLI, Gemini CLI, VS Code: README, Serving). GET /health lists connected servers."
    )


def tools_refusal(request: NeutralRequest, workers: Collection[Worker]) -> RelayError | None:
    """Why the connected workers can never serve ``request`` (its tools), or None."""
    if request.tools and workers and not any(w.info.tools for w in workers):
        names = ", ".join(sorted({w.info.client_name or "unknown client" for w in workers}))
        return RelayError(
            "tools_unsupported",
            f"This request offers tools, but no connected MCP client can use them ({names} does not "
            "declare sampling.tools and runs mcptb-server --tool-emulation off). Send the request without "
            "'tools', turn tool emulation on, or serve with an agent (Claude Code).",
            param="tools",
        )
    return None


def nobody_serving(job: Job, fits: list[Worker]) -> tuple[UnservedKind, str] | None:
    """For a queued job and the connected workers it may go to (``fits``): why none of them will take
    it now, or None (see :meth:`~relay._broker.Broker.unserved`)."""
    # the caller's own session cannot serve it (it waits for this answer): only the others count
    own = [w for w in fits if job.caller.session is not None and w.info.session == job.caller.session]
    fits = [w for w in fits if w not in own]
    if own and not fits:
        return "waiting_for_itself", f"{SELF_SERVING}. {SELF_SERVING_FIX}"
    if not fits or any(w.info.concurrency > 0 or w.info.agent != "away" for w in fits):
        return None
    names = ", ".join(sorted({w.info.client_name or "unknown client" for w in fits}))
    if job.caller.claude_code and all(w.info.client_name == "claude-code" for w in fits):
        return "no_agent", (
            f"This request comes from Claude Code, and only Claude Code ({names}) could answer it, through an "
            "agent that is not serving. If the session that sent it is the one serving the relay (its "
            f"ANTHROPIC_BASE_URL points here), it is waiting for itself. {SELF_SERVING_FIX}"
        )
    why = (
        f"No agent is serving: the connected MCP client{'s' if len(fits) > 1 else ''} ({names}) cannot sample "
        "in the background, and no agent is waiting in next_request"
    )
    notes = sampling_notes(fits)  # a client that declares sampling: say why it cannot
    return "no_agent", f"{why}. {notes}" if notes else why


def sampling_notes(workers: Iterable[Worker]) -> str:
    """Why these clients that declare sampling cannot be sampled (2026-07-28 era), each distinct reason
    once, for the errors of requests nobody picked up; empty if none."""
    notes = dict.fromkeys(w.info.sampling_unavailable for w in workers if w.info.sampling_unavailable)
    return "; ".join(note for note in notes if note)


def waiting_for_nobody(
    job: Job, kind: UnservedKind, why: str, grace: float, now: float
) -> tuple[RelayError | None, float]:
    """A queued job nobody has taken since ``job.nobody_since`` for the reason ``kind`` (``why``): the error
    it fails with once ``grace`` is over, else None and when to look again; logs a warning once after
    :data:`WARN_AFTER` seconds (or the grace, if shorter)."""
    waited = now - job.nobody_since
    flag = "worker" if kind == "no_worker" else "agent"
    if waited >= grace:
        log.warning("%s: nobody served it for %g s (--%s-grace): %s", job.id, grace, flag, why)
        if kind == "no_worker":
            return RelayError(kind, why), now
        return RelayError(kind, f"{why} (for {grace:g} s, relay --agent-grace). {START_AGENT}"), now
    warn_at = min(WARN_AFTER, grace)
    if not job.warned and waited >= warn_at:
        job.warned = True
        waits_for = "an MCP server to connect" if kind == "no_worker" else "an agent"
        log.warning(
            "%s waits for %s; it fails in %s s unless one %s",
            job.id,
            waits_for,
            _seconds(grace - waited),
            "connects" if kind == "no_worker" else f"starts: {why}",
        )
    return None, job.nobody_since + (grace if job.warned else warn_at)


def queue_timeout_error(limit: float, workers: Iterable[Worker]) -> RelayError:
    waited = f"No MCP server or agent picked up this request within {limit:g} s (relay --queue-timeout)"
    notes = sampling_notes(workers)
    if notes:  # the real cause: a client declares sampling but speaks the era without it
        return RelayError("queue_timeout", f"{waited}: {notes}. GET /health lists the servers.")
    return RelayError(
        "queue_timeout",
        f"{waited}: the connected servers were busy. GET /health lists the servers and their free slots.",
    )


def _seconds(value: float) -> str:
    """A duration for people: 11.9961 -> 12, 0.25 -> 0.25, 2.5 -> 2.5."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
