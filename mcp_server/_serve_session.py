"""What a serving session of ``mcptb-serve`` is started with: the Claude Code (or Codex CLI) command line.

The session gets our MCP server directly (``--mcp-config`` with ``--strict-mcp-config``: nothing to
register, no directory scope, no other MCP server), only our tools allowed (``--allowedTools``:
no permission prompt) and none of Claude Code's own tools that act (a request is data from another
program, and the agent that reads it has no shell, files or web to be talked into using). The first
prompt is the serve loop as plain text, not the ``serve`` slash command, whose name differs between
Claude Code versions. Arguments after ``--`` go to ``claude`` unchanged and last.

Which built-in tools: none (``--tools ""``) with ``-p``, where Claude Code connects the MCP server
before the first model request (``MCP_CONNECTION_NONBLOCKING=0``, which ``mcptb-serve`` sets unless
already set), so the model is offered exactly our tools. An interactive session sends the first
prompt before mcptb-server has started (the ``mcp`` import alone takes about a second) and has no
switch to wait, so there it keeps the two built-ins that wait for a connecting MCP server and nothing
else: ``ToolSearch`` (newer Claude Code, which also defers MCP tools behind it) and
``WaitForMcpServers`` (2.1.197; each version ignores the name it does not have). Neither runs
commands, reads files or goes online.

The MCP server is the ``mcptb-server`` script beside this Python, else ``python -m mcp_server`` with
this Python: the same installation as this command, never another one found on PATH. The socket is
passed to it explicitly (``--socket``), and the ``MCPTB_*`` variables of its own settings in this
environment go into its configuration (only those: the JSON is on Claude Code's command line, which
other users can read, and ``MCPTB_API_KEY`` is not a setting of mcptb-server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared_protocol._settings import env_name

from . import _record as record
from . import _stop_hook as stop_hook
from ._commands import server_command
from ._serve_text import SERVE_START
from .cli import ServerOptions

SERVER_NAME = "mcptb"
TOOLS = tuple(f"mcp__{SERVER_NAME}__{tool}" for tool in ("next_request", "reply", "show_request"))
WAIT_TOOLS = "ToolSearch,WaitForMcpServers"
"""The built-in tools of an interactive session: they wait for a connecting MCP server (see above)."""


def headless(extra: Sequence[str]) -> bool:
    return any(arg in ("-p", "--print") for arg in extra)


@dataclass(frozen=True)
class Session:
    """What one serving session is started with, beyond the user's settings."""

    state_dir: str
    """Where its mcptb-server keeps the serving record the hooks and the supervisor read."""
    stop_reminders: int
    budget: int = 0
    """Characters handed to its agent before it ends its turn (headless sessions; 0 = no budget)."""
    session_id: str | None = None
    """Claude Code's ``--session-id`` (headless sessions, whose record the supervisor reads)."""


def server_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``MCPTB_*`` variables of mcptb-server's own settings, for its configuration; not the socket and
    not the session's record and budget, which mcptb-serve decides (a budget left in the environment
    would end an interactive session for good)."""
    ours = {"socket", "session_state", "session_budget"}
    names = {env_name(f.name) for f in dataclasses.fields(ServerOptions) if f.name not in ours}
    return {k: v for k, v in environ.items() if k in names}


def server_launch(socket_path: str, session: Session) -> tuple[str, list[str]]:
    """mcptb-server's command and arguments for a session: the socket, where its record goes, its budget."""
    command, *args = server_command()
    args += ["--socket", socket_path, "--session-state", session.state_dir]
    if session.budget:
        args += ["--session-budget", str(session.budget)]
    return command, args


def mcp_config(socket_path: str, environ: Mapping[str, str], session: Session) -> str:
    """The ``--mcp-config`` JSON: our server under the name ``mcptb``, with the socket, our settings and where
    to keep the serving record."""
    command, args = server_launch(socket_path, session)
    server = {"type": "stdio", "command": command, "args": args, "env": server_settings(environ)}
    return json.dumps({"mcpServers": {SERVER_NAME: server}})


def claude_arguments(
    claude: str, socket_path: str, extra: Sequence[str], environ: Mapping[str, str], session: Session
) -> list[str]:
    """The whole command line. The prompt comes first and a flag without a value right before ``extra``:
    ``--mcp-config``, ``--tools`` and ``--allowedTools`` take several values, and a positional argument
    after one of them would be read as one more. The hooks that keep the session serving come as
    ``--settings`` (nothing is written to the user's configuration). A headless session gets its id
    (the supervisor reads its record) and keeps no transcript (each one would hold every request)."""
    hook = shlex.join(stop_hook.command(session.state_dir, session.stop_reminders))
    own = ["--session-id", session.session_id] if session.session_id else []
    if session.session_id and "--no-session-persistence" not in extra:
        own.append("--no-session-persistence")
    return [
        claude,
        SERVE_START,
        "--mcp-config",
        mcp_config(socket_path, environ, session),
        "--settings",
        json.dumps(stop_hook.settings(hook)),
        *own,
        "--tools",
        "" if headless(extra) else WAIT_TOOLS,
        "--allowedTools",
        ",".join(TOOLS),
        "--strict-mcp-config",
        *extra,
    ]


CODEX_OFF = (
    "shell_tool", "unified_exec", "multi_agent", "image_generation", "view_image", "sleep_tool", "tool_suggest",
    "apps", "goals",
)  # fmt: skip
"""Codex CLI's features that give its agent tools of its own (0.171): all off in a serving session."""


_CODEX_SERVER = re.compile(r'^\s*\[\s*mcp_servers\s*\.\s*(?:"([^"]+)"|([A-Za-z0-9_-]+))', re.MULTILINE)


def codex_servers(environ: Mapping[str, str]) -> list[str]:
    """The MCP servers the user's Codex configuration names (``[mcp_servers.NAME]`` tables in
    ``$CODEX_HOME/config.toml``, default ``~/.codex``), other than ours."""
    home = environ.get("CODEX_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".codex")
    try:
        with open(os.path.join(home, "config.toml"), encoding="utf-8") as source:
            text = source.read()
    except OSError:
        return []
    names = dict.fromkeys(quoted or bare for quoted, bare in _CODEX_SERVER.findall(text))
    # ``-c`` splits its key at every dot and takes no quotes: a name it cannot spell is left as it is
    return [name for name in names if name != SERVER_NAME and re.fullmatch(r"[A-Za-z0-9_-]+", name)]


def toml_value(value: object) -> str:
    """A TOML value for ``-c`` (JSON without ``\\u`` escapes is TOML: strings, arrays)."""
    return json.dumps(value, ensure_ascii=False)


def codex_arguments(
    codex: str, socket_path: str, extra: Sequence[str], environ: Mapping[str, str], session: Session, key: str
) -> list[str]:
    """The Codex CLI command line: the interactive ``codex``, or ``codex exec`` for a headless session (no
    session files, any directory); our server and the hooks as ``-c`` overrides (nothing written to
    ``~/.codex``), which Codex runs only with ``--dangerously-bypass-hook-trust`` (it trusts hooks from
    its own files or by a stored hash; this session's are ours); its own tools off; the serve loop as the
    prompt, last. The user's other MCP servers are turned off for the session (``enabled=false``; Codex
    has no strict mode). Codex hands its MCP servers a minimal environment: the server's settings and the
    record's ``key`` go in its ``env`` table."""
    command, args = server_launch(socket_path, session)
    env = server_settings(environ) | {record.SERVE_SESSION_ENV: key}
    hook = toml_value(shlex.join(stop_hook.command(session.state_dir, session.stop_reminders)))
    hooks = f'[{{hooks=[{{type="command",command={hook}}}]}}]'
    overrides = [
        f"mcp_servers.{SERVER_NAME}.command={toml_value(command)}",
        f"mcp_servers.{SERVER_NAME}.args={toml_value(args)}",
        f"mcp_servers.{SERVER_NAME}.env={{{','.join(f'{toml_value(k)}={toml_value(v)}' for k, v in env.items())}}}",
        f"mcp_servers.{SERVER_NAME}.required=true",
        f"mcp_servers.{SERVER_NAME}.tool_timeout_sec=620",
        f"hooks.Stop={hooks}",
        f"hooks.UserPromptSubmit={hooks}",
        'web_search="disabled"',
        *(f"mcp_servers.{name}.enabled=false" for name in codex_servers(environ)),
    ]
    headless_mode = ["exec", "--skip-git-repo-check", "--ephemeral"] if session.session_id else []
    return [
        codex,
        *headless_mode,
        "--dangerously-bypass-hook-trust",
        *(flag for feature in CODEX_OFF for flag in ("--disable", feature)),
        *(flag for override in overrides for flag in ("-c", override)),
        *extra,
        SERVE_START,
    ]
