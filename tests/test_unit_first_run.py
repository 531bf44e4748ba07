"""What a new user reads first: the relay's start banner and mcptb-server's words when it is typed into a
terminal (the pty test of the real process is in test_worker_link.py)."""

from __future__ import annotations

import io

from mcp_server._terminal import refuse_terminal
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
