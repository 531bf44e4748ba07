"""What a new user reads first: the relay's start banner and mcptb-server's words when it is typed into a
terminal (the pty test of the real process is in test_worker_link.py)."""

from __future__ import annotations

import io

from mcp_server._terminal import EXIT_TERMINAL, refuse_terminal
from relay._config import server_command
from relay._server import banner


def test_the_banner_names_the_next_step_for_each_kind_of_client():
    url, socket = "http://127.0.0.1:8000", "/run/user/1000/mcp-token-bridge/relay.sock"
    first, *steps = banner(url, socket).splitlines()
    assert first.split()[3] == url  # the line tests and `just bench` parse
    assert socket in first
    text = "\n".join(steps)
    assert f"{server_command('mcptb-serve')} --socket {socket}" in text  # Claude Code serving
    assert f"claude mcp add --scope user mcptb -- {server_command()} --socket {socket}" in text
    assert f"base URL {url}/v1" in text  # OpenAI
    assert f"base URL {url} (no /v1), ANTHROPIC_BASE_URL" in text  # Anthropic: the root
    assert f'model="openai/any", api_base="{url}/v1"' in text  # litellm's provider prefix
    assert len(steps) <= 5 and all(len(line) < 100 for line in steps if socket not in line)


def test_mcptb_server_runs_when_stdin_is_not_a_terminal():
    err = io.StringIO()
    assert refuse_terminal(io.StringIO(), err, "/s") is None and err.getvalue() == ""
    assert refuse_terminal(None, err, "/s") is None


def test_mcptb_server_typed_in_a_terminal_prints_a_registration_line_that_works_as_pasted():
    """Issue 15: without --socket it printed a line ending in ``--socket `` (no value), which Claude Code
    shows as "Failed to connect". The line names the socket given, or none (the server finds the relay)."""
    for given, expected in (("", " ".join(server_command_of_this_install())), ("/s", "--socket /s")):
        err = io.StringIO()
        terminal = io.StringIO()
        terminal.isatty = lambda: True  # type: ignore[method-assign]
        assert refuse_terminal(terminal, err, given) == EXIT_TERMINAL
        (line,) = [line for line in err.getvalue().splitlines() if "claude mcp add" in line]
        assert line.rstrip().endswith(expected) and not line.rstrip().endswith("--socket")


def server_command_of_this_install() -> list[str]:
    from mcp_server._commands import server_command as mcp_server_command

    return mcp_server_command()
