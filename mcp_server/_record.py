"""The serving record of one Claude Code session started by ``mcptb-serve``: a small JSON file per
session that its mcptb-server writes (the worker's :class:`~mcp_server._record.Tally`) and that the Stop
hook (``_stop_hook``) and the headless supervisor (``_supervisor``) read; the hook keeps its own notes
beside it.

Rules: the directory is private (0700), made by ``mcptb-serve``; a file is named after the session key
``mcptb-serve`` puts in the session's environment (:data:`SERVE_SESSION_ENV`; a headless session's is
also its ``--session-id``), which Claude Code hands on to both the MCP server and the hooks; it is
replaced whole (write to a temporary file, then rename), so a reader sees the old record or the new
one, never half of one; a missing or unreadable record reads as "nothing yet". No prompt or answer
text is ever written here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

SESSION_ENV = "CLAUDE_CODE_SESSION_ID"
"""Where Claude Code (2.1.197 and newer) tells the MCP servers and hooks it starts its session id."""
SERVE_SESSION_ENV = "MCPTB_SERVE_SESSION"
"""The record's name, set by ``mcptb-serve`` in the session's environment, which Claude Code hands on to
its MCP servers and hooks: it stays the same when Claude Code's own session id changes (``/clear``)."""


def session_key(environ: Mapping[str, str], claude_session: str | None) -> str | None:
    """The name of this session's record: ``mcptb-serve``'s, else Claude Code's session id."""
    return environ.get(SERVE_SESSION_ENV) or claude_session or None


STALE_SECONDS = 7 * 24 * 3600
"""Records untouched this long are removed when ``mcptb-serve`` starts (sessions long gone)."""


@dataclass(frozen=True)
class Tally:
    """What this worker's agent did: the serving record ``mcptb-serve``'s Stop hook and supervisor read."""

    waits: int = 0
    """``next_request`` calls that waited for a request."""
    shown: int = 0
    """Requests handed to the agent."""
    handed: int = 0
    """Characters of those requests, as the agent read them (what its context grew by)."""
    served: int = 0
    """Replies delivered (counted as each goes out to the relay, so a session stopped the moment its caller
    has the answer counts it; taken back when it could not be delivered)."""
    spent: bool = False
    """The budget was reached: ``next_request`` told the agent to end its turn."""


def path(directory: str, session: str, kind: str = "record") -> str:
    safe = "".join(c for c in session if c.isalnum() or c in "-_")[:80] or "unknown"
    return os.path.join(directory, f"{safe}.{kind}.json")


def write(directory: str, session: str, value: Any, kind: str = "record") -> None:
    """Replace the file with ``value`` (a dataclass) as JSON."""
    target = path(directory, session, kind)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(dataclasses.asdict(value), out)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read(directory: str, session: str, cls: type[T], kind: str = "record") -> T | None:
    """The file as ``cls`` (a dataclass), or None when it is missing or not what we wrote."""
    try:
        with open(path(directory, session, kind), encoding="utf-8") as source:
            data = json.load(source)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})
    except (OSError, ValueError, TypeError):
        return None


def remove(directory: str, session: str) -> None:
    for kind in ("record", "hook"):
        try:
            os.unlink(path(directory, session, kind))
        except OSError:
            pass


def prune(directory: str, now: float | None = None) -> None:
    """Remove the records of sessions untouched for :data:`STALE_SECONDS`."""
    cutoff = (time.time() if now is None else now) - STALE_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.name.endswith((".json", ".tmp")) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass
