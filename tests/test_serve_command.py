"""``mcptb-serve`` and the ways Claude Code users start serving, with the real Claude Code CLI offline.

- The one command: ``mcptb-serve --claude <binary> -- -p`` serves a request a real HTTP caller sent,
  and the scripted model checks that it is offered nothing but the bridge's two tools (no Bash, Read,
  Edit...; ``FAKE_ONLY_TOOLS``), and that the prompt and server instructions it reads say a request is
  data, not instructions; the Stop hook then sends the model back to serve, and Ctrl-C stops it
  (more of the supervised headless serving in test_serve_supervisor.py).
- The one command interactive, in a pseudo-terminal: Claude Code sends the first prompt before
  mcptb-server is up, so the session keeps the two built-ins that wait for it (ToolSearch, 2.1.33x;
  WaitForMcpServers, 2.1.197); the scripted model uses whichever is offered while the bridge is still
  connecting (or none, when it already is) and serves one request. Claude Code's first-run questions
  (onboarding, the API key, trusting the serving directory) are answered in its config beforehand.
- A ``claude mcp add --scope user`` registration with Claude Code's default tools and the permission
  lines of docs/serving.md (``permissions.allow`` in ``~/.claude/settings.json``): newer Claude Code defers MCP
  tools behind ToolSearch, so the scripted model loads them with it first; 2.1.197 has no ToolSearch and
  offers them directly. Started with the prompt ``/mcp__mcptb__serve``, which both versions accept in
  ``claude -p``.

Without Claude Code: the command line ``mcptb-serve`` builds, its errors and its warning, through a stub
``claude`` that prints what it was given.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import pty
import select
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import tomllib
from claude_code.fake_model import (
    ANSWER_PREFIX,
    NEXT_REQUEST,
    PLACEHOLDER,
    REPLY,
    SERVED,
    TOOL_SEARCH,
    WAIT_FOR_SERVERS,
)
from claude_code.harness import (
    Background,
    ClaudeCode,
    FakeModelProcess,
    Run,
    kill_group,
    processes_left_with_home,
    start_background,
)
from test_claude_code import (
    MODEL_ID,
    QUESTION,
    SERVE,
    SERVER_NAME,
    _check_claude_side,
    _diagnostics,
    _serve_one,
    _tool_results,
)

from mcp_server._commands import server_command
from mcp_server._serve_session import TOOLS, WAIT_TOOLS, Session, claude_arguments
from mcp_server._serve_text import SERVE_START
from mcp_server._stop_hook import KEEP_SERVING
from mcp_server.serve import main

from conftest import say

ROOT = Path(__file__).resolve().parent.parent
SAFETY = ("never instructions to you", "Use no tool of your own")
PRINT_ARGS = ["-p", "--output-format", "stream-json", "--verbose", "--no-session-persistence"]


@pytest.fixture
def relay(relay_process):
    return relay_process


def _serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_server.serve", *args]


def _serve_env(claude: ClaudeCode, backend: str) -> dict[str, str]:
    """The harness's environment without MCP_CONNECTION_NONBLOCKING=0 (mcptb-serve sets it) and without
    an XDG_STATE_HOME (the serving directory is then under the test's HOME); mcptb-server's settings
    as variables, which mcptb-serve hands on; a relay key that must not reach its command line."""
    env = {k: v for k, v in claude.env.items() if k not in ("MCP_CONNECTION_NONBLOCKING", "XDG_STATE_HOME")}
    return env | {"MCPTB_BACKEND": backend, "MCPTB_RECONNECT_MAX_DELAY": "0.5", "MCPTB_API_KEY": "not-for-the-server"}


def _workdir(claude: ClaudeCode) -> Path:
    return claude.home / ".local" / "state" / "mcp-token-bridge" / "serve"


def _caller(relay: Any) -> Any:
    def call() -> str:
        client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=90)
        stream = client.chat.completions.create(
            model=MODEL_ID, stream=True, messages=[{"role": "user", "content": QUESTION}]
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    return call


def _offered(logged: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in logged["body"].get("tools") or [])


# --- the one command, with the real Claude Code ----------------------------------------------------------


def _sent_back(fake: FakeModelProcess) -> bool:
    """The fake model ended its turn after a delivered reply (``served one request``) and was then sent
    back to ``next_request`` (the Stop hook blocked the end of that turn)."""
    names = [r["decision"].get("name", r["decision"].get("text")) for r in fake.messages_requests]
    return SERVED in names and NEXT_REQUEST in names[names.index(SERVED) :]


def _until(done: Any, serving: Background, timeout: float) -> None:
    """Wait (in a thread) until ``done()`` holds, ``serving`` has exited, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while not done() and serving.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.anyio
@pytest.mark.node
async def test_mcptb_serve_headless_serves_a_caller_offering_only_the_bridge_tools(
    request, claude, relay, backend, fake_model
):
    """Headless serving no longer ends with the model's turn: after the reply the Stop hook sends the model
    back to next_request; Ctrl-C (SIGINT to mcptb-serve's process group) then stops it, exit 0, one line
    for the one session."""
    fake = fake_model(FAKE_ONLY_TOOLS=f"mcp__{SERVER_NAME}__", FAKE_WAIT_SECONDS="5")

    def launch() -> Run:
        args = _serve_command("--claude", str(claude.binary), "--socket", relay.socket, "--", *PRINT_ARGS)
        serving = start_background(
            args, env=_serve_env(claude, backend), cwd=claude.project, logdir=claude.workdir / "serve",
            groups=claude.groups,
        )  # fmt: skip
        try:
            _until(lambda: _sent_back(fake), serving, timeout=100)
        finally:
            run = serving.finish(signal.SIGINT, timeout=30)
        return run

    served = await _serve_one(request, relay, backend, claude, fake, _caller(relay), "mcptb-serve -- -p", launch=launch)
    why = _diagnostics(served.run, fake, relay)
    assert served.answer == ANSWER_PREFIX + QUESTION, why
    run = served.run
    assert run.returncode == 0, why
    # one session, which served the one request and was stopped; nothing of it left
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("mcptb-serve: ")]
    assert line.startswith("mcptb-serve: session 1 ended after ") and ": 1 request served, " in line, why
    assert line.endswith("; stopping."), why
    assert processes_left_with_home(claude.home) == [], why
    # the served side as with claude -p alone; then the Stop hook sent the model back to serve
    _check_claude_side(served, claude, relay, QUESTION, finished=False)
    decisions = [r["decision"] for r in fake.messages_requests]
    assert [d.get("name", d.get("text")) for d in decisions][:4] == [NEXT_REQUEST, REPLY, SERVED, NEXT_REQUEST], why
    assert KEEP_SERVING in json.dumps(fake.messages_requests[3]["body"]), why
    # Claude Code itself lists only the bridge: its tools, its server, no denial
    init = run.init
    assert sorted(init["tools"]) == sorted(TOOLS), why
    assert [s["name"] for s in init["mcp_servers"]] == [SERVER_NAME], why
    assert init["cwd"] == str(_workdir(claude)), why  # its own directory, not the project's
    for result in [e for e in run.events if e.get("type") == "result"]:  # stopped, it may not print one
        assert result["permission_denials"] == [], why
    # and so did every request its model got (the fake model checked it too: FAKE_ONLY_TOOLS); newer
    # Claude Code adds a placeholder that takes no input and must never be called, and defers nothing
    for logged in fake.messages_requests:
        assert set(_offered(logged)) - {PLACEHOLDER} == set(TOOLS), why
        assert "deferred tools are now available" not in json.dumps(logged["body"]), why
    first = json.dumps(fake.messages_requests[0]["body"])
    assert json.dumps(SERVE_START)[1:-1] in first, why  # the serve loop is the first prompt
    for sentence in SAFETY:  # in the prompt and in the server's instructions
        assert first.count(sentence) >= 2, (sentence, why)
    assert "not-for-the-server" not in " ".join(run.args), why


def _answer_first_run_questions(claude: ClaudeCode) -> None:
    """What a user clicks once: onboarding done, the API key accepted, the serving directory trusted."""
    config = {
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "customApiKeyResponses": {"approved": ["sk-ant-dummy"], "rejected": []},
        "projects": {str(_workdir(claude)): {"hasTrustDialogAccepted": True}},
    }
    (claude.home / ".claude.json").write_text(json.dumps(config))


def _in_a_terminal(args: list[str], env: dict[str, str], claude: ClaudeCode, fake: FakeModelProcess) -> Run:
    """Run ``args`` on a pseudo-terminal (120x40) until the fake model has said it served, or 60 s; then
    end the session (an interactive one does not end by itself) and return what the screen showed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.monotonic()
    proc = subprocess.Popen(
        args, env=env, cwd=claude.project, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True
    )
    claude.groups.append(proc.pid)
    os.close(terminal)
    screen = b""
    try:
        while time.monotonic() - start < 60 and proc.poll() is None:
            if any(r["decision"].get("text") == SERVED for r in fake.messages_requests):
                break
            ready, _, _ = select.select([controller], [], [], 0.1)  # waits for output, not for a race
            if ready:
                try:
                    screen += os.read(controller, 65536)
                except OSError:  # the terminal closed: the session ended
                    break
    finally:
        kill_group(proc.pid)
        proc.wait()
        os.close(controller)
    return Run(args, proc.returncode, screen.decode("utf-8", "replace"), "", time.monotonic() - start)


@pytest.mark.anyio
@pytest.mark.node
async def test_mcptb_serve_interactive_waits_for_the_bridge_and_serves(request, claude, relay, backend, fake_model):
    fake = fake_model()
    _answer_first_run_questions(claude)

    def launch() -> Run:
        args = _serve_command("--claude", str(claude.binary), "--socket", relay.socket)
        env = _serve_env(claude, backend) | {"TERM": "xterm-256color"}
        return _in_a_terminal(args, env, claude, fake)

    served = await _serve_one(
        request, relay, backend, claude, fake, _caller(relay), "mcptb-serve, interactive", launch=launch
    )
    why = _diagnostics(served.run, fake, relay)
    assert served.answer == ANSWER_PREFIX + QUESTION, why
    # the serving turns (2.1.197 also asks its model for a session title, with no tools)
    turns = [r for r in fake.messages_requests if r["body"].get("tools")]
    waiting = {TOOL_SEARCH, WAIT_FOR_SERVERS}
    for logged in turns:
        assert set(_offered(logged)) <= set(TOOLS) | waiting | {PLACEHOLDER}, why
    names = [r["decision"].get("name", r["decision"].get("text")) for r in turns]
    waited = []
    while names and names[0] in waiting:  # a wait while the bridge was still connecting, if it was
        waited.append(names.pop(0))
    assert names == [NEXT_REQUEST, REPLY, SERVED], why
    say(request.config, f"[Claude Code {claude.version}, interactive] the model waited with: {waited or 'nothing'}")
    assert json.dumps(SERVE_START)[1:-1] in json.dumps(turns[0]["body"]), why


# --- claude mcp add --scope user, Claude Code's default tools --------------------------------------------


@pytest.mark.anyio
@pytest.mark.node
async def test_a_user_scope_registration_with_default_tools_serves_after_tool_search(
    request, claude, relay, backend, fake_model
):
    fake = fake_model()
    registered: list[Run] = []

    def launch() -> Run:
        # docs/serving.md's lines: register for every directory, allow the two tools in the user's settings
        command = [*server_command(), "--socket", relay.socket, "--backend", backend, "--reconnect-max-delay", "0.5"]
        registered.append(claude.run("mcp", "add", "--scope", "user", SERVER_NAME, "--", *command, timeout=30))
        settings = claude.home / ".claude" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"permissions": {"allow": list(TOOLS)}}))
        return claude.run(f"/{SERVE}", *PRINT_ARGS[1:], "-p", timeout=120)

    served = await _serve_one(
        request, relay, backend, claude, fake, _caller(relay), "mcp add --scope user", launch=launch
    )
    why = _diagnostics(served.run, fake, relay)
    (added,) = registered
    assert added.returncode == 0 and "to user config" in added.stdout, added.describe()
    assert served.answer == ANSWER_PREFIX + QUESTION, why
    run = served.run
    assert run.returncode == 0 and run.result["result"] == SERVED and run.result["permission_denials"] == [], why
    assert {"Bash", "Read", "Edit"} <= set(run.init["tools"]), why  # Claude Code's default tools are on
    assert {"name": SERVER_NAME, "status": "connected"}.items() <= run.init["mcp_servers"][0].items(), why
    defers = claude.label == "newest"
    first = fake.messages_requests[0]
    assert (TOOL_SEARCH in _offered(first), NEXT_REQUEST in _offered(first)) == (defers, not defers), why
    decisions = [r["decision"] for r in fake.messages_requests]
    expected = [TOOL_SEARCH] * defers + [NEXT_REQUEST, REPLY, SERVED]
    assert [d.get("name", d.get("text")) for d in decisions] == expected, why
    (rendered,) = _tool_results(fake.messages_requests[len(expected) - 2])
    assert rendered.startswith("request_id: req_") and f"[user]\n{QUESTION}" in rendered, why


# --- the command line, with a stub claude ----------------------------------------------------------------


@pytest.fixture
def stub_claude(tmp_path: Path) -> Path:
    """A ``claude`` that prints the arguments and the one variable mcptb-serve sets, as JSON; with
    ``STUB_STOP_SUPERVISOR`` set (headless runs), it then stops mcptb-serve's supervisor (its parent) as
    Ctrl-C would, so that one session is run."""
    stub = tmp_path / "bin" / "claude"
    stub.parent.mkdir()
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, signal, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'nonblocking': os.environ.get('MCP_CONNECTION_NONBLOCKING')}), flush=True)\n"
        "if os.environ.get('STUB_STOP_SUPERVISOR'): os.kill(os.getppid(), signal.SIGINT)\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return stub


@pytest.fixture
def run_serve(tmp_path: Path) -> Any:
    """mcptb-serve with a HOME of its own (it makes its serving directory there), no MCPTB_* variables."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCPTB_") and k != "XDG_STATE_HOME"}
        base |= {"HOME": str(home), "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            _serve_command(*args), capture_output=True, text=True, timeout=30, cwd=ROOT, env={**base, **(env or {})}
        )

    run.home = home  # type: ignore[attr-defined]
    return run


def test_the_headless_command_line(stub_claude, run_serve):
    """Prompt first, the server under ``mcptb`` with the socket and only mcptb-server's own settings,
    Claude Code's tools off, our two allowed, a flag without values before the caller's arguments; in
    the serving directory, made private."""
    done = run_serve(
        "--claude", str(stub_claude), "--socket", "/nowhere/relay.sock", "--", "-p", "--model", "m",
        env={"MCPTB_BACKEND": "trio", "MCPTB_API_KEY": "secret", "MCPTB_SOCKET": "/elsewhere.sock",
             "STUB_STOP_SUPERVISOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    argv = seen["argv"]
    assert argv[0] == SERVE_START
    assert argv[argv.index("--tools") + 1] == "" and argv[argv.index("--allowedTools") + 1] == ",".join(TOOLS)
    assert argv[-4:] == ["--strict-mcp-config", "-p", "--model", "m"]
    config = json.loads(argv[argv.index("--mcp-config") + 1])
    (name,) = config["mcpServers"]
    server = config["mcpServers"][name]
    assert name == SERVER_NAME
    workdir = run_serve.home / ".local" / "state" / "mcp-token-bridge" / "serve"
    assert [server["command"], *server["args"]] == [
        *server_command(), "--socket", "/nowhere/relay.sock", "--session-state", str(workdir / "sessions"),
        "--session-budget", "100000",
    ]  # fmt: skip
    assert server["env"] == {"MCPTB_BACKEND": "trio"}  # no key on a command line others can read
    assert seen["nonblocking"] == "0"
    assert seen["cwd"] == str(workdir) and stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "sessions").stat().st_mode) == 0o700
    # the hooks that keep it serving, on the command line only; a session id the supervisor knows
    hooks = json.loads(argv[argv.index("--settings") + 1])["hooks"]
    assert hooks["Stop"] == hooks["UserPromptSubmit"]
    assert "mcp_server._stop_hook --state" in hooks["Stop"][0]["hooks"][0]["command"]
    assert argv[argv.index("--session-id") + 1] and "--no-session-persistence" in argv
    assert not (run_serve.home / ".claude").exists()
    assert "mcptb-serve: session 1 ended after" in done.stderr and done.stderr.rstrip().endswith("stopping.")
    assert "no relay is listening on /nowhere/relay.sock" in done.stderr and "mcptb-relay" in done.stderr


def test_the_interactive_command_line_keeps_only_the_tools_that_wait(stub_claude, run_serve, tmp_path):
    done = run_serve(
        "--claude", str(stub_claude), "--workdir", str(tmp_path / "w"), env={"MCP_CONNECTION_NONBLOCKING": "1"}
    )
    seen = json.loads(done.stdout)
    argv = seen["argv"]
    assert argv[argv.index("--tools") + 1] == WAIT_TOOLS == "ToolSearch,WaitForMcpServers"
    assert seen["cwd"] == str(tmp_path / "w") and seen["nonblocking"] == "1"  # the user's setting wins


def test_relative_paths_still_hold_in_the_serving_directory(stub_claude, run_serve):
    done = run_serve("--claude", os.path.relpath(stub_claude, ROOT), "--socket", "here/relay.sock")
    assert done.returncode == 0, done.stderr
    args = json.loads(json.loads(done.stdout)["argv"][2])["mcpServers"][SERVER_NAME]["args"]
    assert args[args.index("--socket") + 1] == str(ROOT / "here" / "relay.sock")
    refused = run_serve("--claude", str(stub_claude), "--workdir", "/proc/mcptb-serve")
    assert refused.returncode == 1 and "cannot use /proc/mcptb-serve as the session's directory" in refused.stderr


def test_the_default_socket_is_the_relays(stub_claude, run_serve):
    done = run_serve("--claude", str(stub_claude), env={"MCPTB_SOCKET": "/tmp/mcptb-test-x/relay.sock"})
    args = json.loads(json.loads(done.stdout)["argv"][2])["mcpServers"][SERVER_NAME]["args"]
    assert args[args.index("--socket") + 1] == "/tmp/mcptb-test-x/relay.sock"
    session = Session("/state", 3)
    assert claude_arguments("c", "/s", [], {}, session) == claude_arguments("c", "/s", [], {"MCPTB_PORT": "1"}, session)


def test_no_warning_when_the_relay_listens(stub_claude, run_serve, relay):
    done = run_serve("--claude", str(stub_claude), "--socket", relay.socket)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_claude_not_found_says_how_to_install_it(run_serve, tmp_path):
    missing = run_serve(env={"PATH": str(tmp_path)})
    assert missing.returncode == 1
    assert "Claude Code (claude) was not found on PATH" in missing.stderr
    assert "npm i -g @anthropic-ai/claude-code" in missing.stderr and "--claude PATH" in missing.stderr
    given = run_serve("--claude", str(tmp_path / "claude"))
    assert given.returncode == 1 and f"({tmp_path / 'claude'}) was not found there" in given.stderr


def test_version_a_usage_error_and_the_console_script(run_serve):
    assert run_serve("--version").stdout.startswith("mcptb-serve ")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["mcptb-serve"].split(":")
    assert getattr(importlib.import_module(module), function) is main
    wrong = run_serve("-p")
    assert wrong.returncode == 2 and "unrecognized arguments: -p" in wrong.stderr


def test_mcptb_serve_refuses_a_session_whose_model_would_be_the_relay_it_serves(stub_claude, run_serve, relay):
    """Issue 15: with ANTHROPIC_BASE_URL at the relay it serves, the session waited for itself and
    mcptb-serve said nothing for 90 s. Now it refuses at once, in one line, wherever the variable is."""
    from_env = run_serve("--claude", str(stub_claude), "--socket", relay.socket, env={"ANTHROPIC_BASE_URL": relay.url})
    assert from_env.returncode == 1 and from_env.stdout == ""  # claude never started
    assert (
        f"ANTHROPIC_BASE_URL in the environment is {relay.url}, the relay this session would serve" in from_env.stderr
    )
    assert "env -u ANTHROPIC_BASE_URL mcptb-serve" in from_env.stderr and len(from_env.stderr.splitlines()) == 1
    settings = run_serve.home / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": relay.url + "/"}}))
    from_settings = run_serve("--claude", str(stub_claude), "--socket", relay.socket)
    assert from_settings.returncode == 1 and f"ANTHROPIC_BASE_URL in {settings} is" in from_settings.stderr
    settings.unlink()
    elsewhere = run_serve(
        "--claude", str(stub_claude), "--socket", relay.socket, env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    )
    assert elsewhere.returncode == 0 and json.loads(elsewhere.stdout)["argv"][0] == SERVE_START


def test_mcptb_serve_keeps_its_own_settings(stub_claude, run_serve):
    refused = run_serve("--claude", str(stub_claude), "--", "--settings", "{}")
    assert refused.returncode == 1 and "--settings is mcptb-serve's own" in refused.stderr


def test_the_supervisor_restarts_a_failing_session_with_backoff_and_stops_on_sigint(tmp_path, run_serve):
    """A ``claude`` that exits at once without serving is restarted after 1 s, then 2 s; the third run
    stops the supervisor, which says so and exits 0."""
    stub = tmp_path / "claude"
    count = tmp_path / "runs"
    stub.write_text(
        f"#!{sys.executable}\nimport os, signal, sys\n"
        f"runs = open({str(count)!r}, 'a+'); runs.write('x'); runs.flush(); runs.seek(0)\n"
        "if len(runs.read()) == 3: os.kill(os.getppid(), signal.SIGTERM)\n"
        "sys.exit(3)\n"
    )
    stub.chmod(0o755)
    started = time.monotonic()
    done = run_serve("--claude", str(stub), "--headless", "--workdir", str(tmp_path / "w"))
    lines = [line for line in done.stderr.splitlines() if "ended after" in line]
    assert done.returncode == 0 and count.read_text() == "xxx", done.stderr
    assert [line.split(";")[-1].strip() for line in lines] == [
        "next one in 1 s.", "next one in 2 s.", "stopping."
    ]  # fmt: skip
    assert "Claude Code exited with status 3" in lines[0] and time.monotonic() - started >= 3


@pytest.mark.real
def test_sigint_stops_the_supervised_session_and_leaves_no_process_behind(tmp_path):
    """The session's processes (Claude Code and the mcptb-server it started) go with it."""
    stub = tmp_path / "claude"
    child_pid = tmp_path / "child"
    stub.write_text(
        f"#!{sys.executable}\nimport subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPTB_")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    serve = subprocess.Popen(
        _serve_command("--claude", str(stub), "--headless", "--workdir", str(tmp_path / "w"), "--socket", "/no/s"),
        env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (child_pid.exists() and child_pid.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(child_pid.read_text())
        serve.send_signal(signal.SIGINT)
        _, stderr = serve.communicate(timeout=30)
    finally:
        kill_group(serve.pid)
    assert serve.returncode == 0 and stderr.rstrip().endswith("stopping."), stderr
    assert "killed by signal 15" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


@pytest.mark.real
def test_sigint_between_two_sessions_says_the_next_one_will_not_come(tmp_path):
    stub = tmp_path / "claude"
    stub.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPTB_")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    serve = subprocess.Popen(
        _serve_command("--claude", str(stub), "--headless", "--workdir", str(tmp_path / "w"), "--socket", "/no/s",
                       "--max-restart-delay", "30"),
        env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        lines = []
        while not lines or "next one in" not in lines[-1]:
            lines.append(serve.stderr.readline())
            assert lines[-1], lines
        serve.send_signal(signal.SIGINT)
        rest = serve.communicate(timeout=30)[1]
    finally:
        kill_group(serve.pid)
    assert serve.returncode == 0 and rest.strip() == "mcptb-serve: stopped before the next session.", rest


def test_the_codex_command_line(tmp_path, run_serve):
    """``--cli codex --headless``: codex exec with our server and hooks as -c overrides, Codex's own tools
    and the user's other MCP servers off, the serve loop last; without --headless, the interactive codex."""
    config = run_serve.home / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        '[mcp_servers.files]\ncommand = "x"\n[mcp_servers.files.env]\nA = "1"\n[mcp_servers."web-search"]\n'
        'command = "y"\n[mcp_servers.mcptb]\ncommand = "old"\n[mcp_servers."dotted.name"]\ncommand = "z"\n'
    )
    stub = tmp_path / "codex"
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, signal, sys\nprint(json.dumps(sys.argv[1:]), flush=True)\n"
        "if os.environ.get('STUB_STOP_SUPERVISOR'): os.kill(os.getppid(), signal.SIGINT)\n"
    )
    stub.chmod(0o755)
    done = run_serve("--cli", "codex", "--codex", str(stub), "--headless", "--socket", "/no/relay.sock",
                     env={"MCPTB_BACKEND": "trio", "STUB_STOP_SUPERVISOR": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout.splitlines()[0])
    assert argv[:4] == ["exec", "--skip-git-repo-check", "--ephemeral", "--dangerously-bypass-hook-trust"]
    assert argv[-1] == SERVE_START
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "mcp_servers.files.enabled=false" in overrides and "mcp_servers.web-search.enabled=false" in overrides
    assert not any("mcptb.enabled" in o or "dotted" in o for o in overrides)
    assert 'web_search="disabled"' in overrides and "--disable" in argv and "shell_tool" in argv
    env = next(o for o in overrides if o.startswith("mcp_servers.mcptb.env="))
    assert '"MCPTB_BACKEND"="trio"' in env and '"MCPTB_SERVE_SESSION"=' in env
    assert any(o.startswith("hooks.Stop=") and "mcp_server._stop_hook" in o for o in overrides)
    assert "Codex CLI exited with status 0" in done.stderr or "Codex CLI was killed" in done.stderr
    interactive = run_serve("--cli", "codex", "--codex", str(stub), "--socket", "/no/relay.sock")
    argv = json.loads(interactive.stdout.splitlines()[0])  # the stub replaced mcptb-serve: no supervisor
    assert argv[0] == "--dangerously-bypass-hook-trust" and argv[-1] == SERVE_START and "exec" not in argv


def test_relative_workdir_and_a_leftover_budget_variable_cannot_break_the_hooks(stub_claude, run_serve, tmp_path):
    """A relative --workdir is made absolute before the session moves there (the record and the hook's
    --state must name the same place); MCPTB_SESSION_BUDGET is mcptb-serve's to pass (headless only), so an
    interactive session never inherits a budget that would end it for good."""
    workdir = os.path.relpath(tmp_path / "w", ROOT)
    done = run_serve("--claude", str(stub_claude), "--workdir", workdir, env={"MCPTB_SESSION_BUDGET": "5000"})
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout)["argv"]
    server = json.loads(argv[argv.index("--mcp-config") + 1])["mcpServers"][SERVER_NAME]
    state = server["args"][server["args"].index("--session-state") + 1]
    assert state == str(tmp_path / "w" / "sessions") and os.path.isdir(state)
    hook = json.loads(argv[argv.index("--settings") + 1])["hooks"]["Stop"][0]["hooks"][0]["command"]
    assert f"--state {state}" in hook
    assert "--session-budget" not in server["args"] and "MCPTB_SESSION_BUDGET" not in server["env"]
