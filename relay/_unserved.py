"""Why nobody serves a request, in words that say what to do about it.

The broker decides which connected workers a request may go to and whether one of them takes it;
this module says why none does, for the error its caller gets and for the relay's log: no MCP server
connected (the registration line names this relay's socket), a request with tools that no connected
client can use, workers that answer only through an agent while no agent is serving, and the Claude
Code session that would serve the request being the one that sent it (it waits for itself).
Functions of the workers as they are at the moment; no state.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable
from typing import Literal

from shared_protocol import NeutralRequest, default_socket_path

from ._config import server_command
from ._errors import RelayError
from ._jobs import Job, Worker

UnservedKind = Literal["no_worker", "no_agent", "waiting_for_itself"]
"""Why a queued job has nobody to take it (each a :class:`~relay._errors.RelayError` kind)."""

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
