"""``mcptb-server`` typed into a terminal: say what it is for and stop.

An MCP client starts ``mcptb-server`` with pipes on its stdin and stdout and speaks MCP over them. Started
by hand, its stdin is the terminal: it would wait silently for MCP messages that never come, while its
link to the relay made it count as a connected worker that nobody serves. So when stdin is a terminal it
writes to stderr how it is meant to be started, and exits with :data:`EXIT_TERMINAL` before it imports
the ``mcp`` SDK or touches the relay's socket.
"""

from __future__ import annotations

from typing import TextIO

from ._commands import beside, server_command

EXIT_TERMINAL = 2
"""The exit status for "started the wrong way" (the status of a usage error, which this is)."""


def how_to_start(socket_path: str) -> str:
    """What to do instead: serve with ``mcptb-serve``, or register the server with an MCP client. The
    registration names the socket only when one was given (``--socket``, ``MCPTB_SOCKET``): without it
    mcptb-server finds the relay by itself."""
    serve = beside("mcptb-serve") or "mcptb-serve"
    server = " ".join([*server_command(), *(["--socket", socket_path] if socket_path else [])])
    return (
        "mcptb-server is an MCP server: an MCP client starts it and speaks MCP on its stdin and stdout, so "
        "started by hand in a terminal it would only wait.\n"
        f"  serve the relay's requests with Claude Code:  {serve}\n"
        f"  or register it with Claude Code:               claude mcp add --scope user mcptb -- {server}\n"
        "  (other MCP clients: this command in their MCP server configuration, type stdio)"
    )


def refuse_terminal(stdin: TextIO | None, stderr: TextIO, socket_path: str) -> int | None:
    """The exit status when ``stdin`` is a terminal (after saying why on ``stderr``), else None."""
    if stdin is None or not stdin.isatty():
        return None
    print(how_to_start(socket_path), file=stderr, flush=True)
    return EXIT_TERMINAL
