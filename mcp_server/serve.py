"""``mcptb-serve``: one command that starts a Claude Code session dedicated to serving the relay, and
keeps it serving until the user stops it.

The session's command line (our MCP server given directly, only our tools allowed, none of the CLI's
own that act) is ``_serve_session``'s.

It keeps serving: the session gets a ``UserPromptSubmit`` and a ``Stop`` hook on its command line
(``--settings``; ``_stop_hook`` decides), and its mcptb-server keeps a serving record the hook reads
(``--session-state``, named by ``MCPTB_SERVE_SESSION`` in the session's environment). Headless
(``--headless``, or ``-- -p``) is supervised (``_supervisor``): ``claude -p`` sessions one after another,
each rotated once ``--session-budget`` characters were handed to its agent. ``--cli codex`` serves with
``codex exec`` sessions the same way (``-c`` overrides, the same hook). Before it starts, it refuses a
session whose ``ANTHROPIC_BASE_URL`` is the relay it would serve (it would wait for itself).

The session runs in a directory of its own (``--workdir``, default ``$XDG_STATE_HOME/mcp-token-bridge/
serve``): Claude Code asks to trust a directory once, so this asks once ever, no project's
``CLAUDE.md`` enters the serving context, and serving transcripts stay out of the projects' histories.

An interactive Claude Code replaces this process (``os.execve``): it owns the terminal, gets its signals (Ctrl-C, a
window resize, job control) straight from the kernel and exits with its own status; there is nothing
to clean up afterwards, so a parent that forwards signals would only add a process and a way to get
them wrong. Checks happen before: a missing ``claude`` is an error that says how to install it; a
relay that is not listening is a warning (the server connects by itself once the relay starts).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared_protocol import default_socket_path
from shared_protocol._settings import package_version, parse_settings, setting
from shared_protocol._trust import directory_problem

from . import _record as record
from ._discovery import candidates
from ._serve_session import Session, claude_arguments, codex_arguments, headless

INSTALL_HINT = "npm i -g @anthropic-ai/claude-code"
CODEX_HINT = "npm i -g @openai/codex"


@dataclass(frozen=True)
class ServeOptions:
    cli: str = field(
        default="claude",
        metadata=setting(
            "the agent CLI that serves: Claude Code, or Codex CLI (--headless: codex exec sessions); both are "
            "kept serving by a Stop hook",
            choices=["claude", "codex"],
        ),
    )
    claude: str = field(
        default="claude",
        metadata=setting("the Claude Code CLI to run: a path, or a name looked up on PATH (default claude)"),
    )
    codex: str = field(
        default="codex",
        metadata=setting("with --cli codex, the Codex CLI to run: a path, or a name on PATH (default codex)"),
    )
    socket: str = field(
        default="",
        metadata=setting(
            "the relay's Unix socket, passed to mcptb-server (default: where a running relay is found, as "
            "mcptb-server finds it, else the per-user path the relay uses)",
            shown_default="the relay's, as mcptb-server finds it",
        ),
    )
    workdir: str = field(
        default="",
        metadata=setting(
            "directory the session runs in (default: $XDG_STATE_HOME/mcp-token-bridge/serve, i.e. "
            "~/.local/state/...: trusted once, no project's CLAUDE.md)",
            shown_default="$XDG_STATE_HOME/mcp-token-bridge/serve",
        ),
    )
    headless: bool = field(
        default=False,
        metadata=setting(
            "serve with claude -p sessions, one after another until stopped (the same as mcptb-serve -- -p); "
            "headless runs may be billed differently from interactive ones (README: what serving costs)"
        ),
    )
    session_budget: int = field(
        default=100_000,
        metadata=setting(
            "headless: characters of requests handed to a session's agent after which it ends its turn and a "
            "fresh session takes over, so the context each request pays for stays small (0 = never)",
            minimum=0,
        ),
    )
    stop_reminders: int = field(
        default=3,
        metadata=setting(
            "times in a row the Stop hook sends an agent that ended its turn back to next_request, when it "
            "called nothing after the last reminder, before the session may end (a broken session must not "
            "loop for ever)",
            positive=True,
        ),
    )
    max_restart_delay: float = field(
        default=60.0,
        metadata=setting(
            "headless: longest pause before restarting a session that failed without serving (the pause "
            "doubles from 1 s)",
            positive=True,
        ),
    )


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[ServeOptions, list[str]]:
    """Our settings, and the arguments after ``--`` that go to ``claude`` unchanged."""
    argv = list(argv)
    ours, theirs = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    options, _ = parse_settings(
        ServeOptions,
        ours,
        environ,
        prog="mcptb-serve",
        description="Start a Claude Code (or Codex) session that serves MCP Token Bridge requests until you "
        "stop it: mcptb-server given to it directly, only its tools allowed, the CLI's own tools off, the serve "
        "loop started and kept going by a Stop hook (Esc stops serving). --headless runs supervised claude -p "
        "(or codex exec) sessions one after another. Arguments after -- go to the CLI unchanged (mcptb-serve "
        "-- -p is --headless). Every flag can also be set as an environment variable MCPTB_<FLAG>.",
        defaults={"socket": found_socket(), "workdir": default_workdir(environ)},
        version=package_version,
    )
    return options, theirs


def found_socket() -> str:
    """The relay's socket as mcptb-server would find it (``_discovery``): the first candidate a trusted relay
    answers on, else the default path."""
    for path in candidates():
        if relay_warning(path) is None:
            return path
    return default_socket_path()


def default_workdir(environ: Mapping[str, str]) -> str:
    home = environ.get("HOME") or os.path.expanduser("~")
    state = environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    return os.path.join(state, "mcp-token-bridge", "serve")


def find_claude(name: str) -> str | None:
    """The executable ``--claude`` (or ``--codex``) names: a path as given, a bare name on PATH."""
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def relay_warning(socket_path: str) -> str | None:
    """What to tell the user when no relay seems to listen on ``socket_path`` (None when one accepts
    there). Connecting and closing without a word costs the relay nothing (it waits for a hello, then
    drops the connection without a log line)."""
    problem = directory_problem(os.path.dirname(socket_path))
    if problem:
        return f"{problem}. mcptb-server will refuse this socket until then"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(socket_path)
    except OSError as exc:
        return (
            f"no relay is listening on {socket_path} ({exc.strerror or exc}). Start it (`mcptb-relay`, or "
            "`just relay` in the repository); mcptb-server connects by itself, and next_request says so until then"
        )
    finally:
        probe.close()
    return None


def base_urls(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Where the serving session would get ``ANTHROPIC_BASE_URL`` from: (where, url) pairs."""
    found = []
    if environ.get("ANTHROPIC_BASE_URL"):
        found.append(("the environment", environ["ANTHROPIC_BASE_URL"]))
    home = environ.get("HOME") or os.path.expanduser("~")
    user_settings = os.path.join(home, ".claude", "settings.json")
    try:
        with open(user_settings, encoding="utf-8") as source:
            url = (json.load(source).get("env") or {}).get("ANTHROPIC_BASE_URL")
        if isinstance(url, str) and url:
            found.append((user_settings, url))
    except (OSError, ValueError, AttributeError):
        pass
    return found


def is_this_relay(url: str, socket_path: str, environ: Mapping[str, str]) -> bool:
    """``url`` is the relay listening on ``socket_path`` (or a relay whose socket it does not show): asked
    over HTTP, on loopback only, in two seconds at most."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    key = environ.get("ANTHROPIC_AUTH_TOKEN") or environ.get("ANTHROPIC_API_KEY") or ""
    root = url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(
            urllib.request.Request(root + "/health", headers={"authorization": f"Bearer {key}"}), timeout=2
        ) as answer:
            health = json.load(answer)
        if "socket" in health:
            return bool(os.path.abspath(str(health["socket"])) == socket_path)
        with urllib.request.urlopen(root + "/", timeout=2) as answer:
            return bool(json.load(answer).get("name") == "mcp-token-bridge")
    except (OSError, ValueError, AttributeError):
        return False


def self_serving(environ: Mapping[str, str], socket_path: str) -> str | None:
    """Why the session would wait for itself (its model would be the relay it serves), or None."""
    for where, url in base_urls(environ):
        if is_this_relay(url, socket_path, environ):
            return (
                f"ANTHROPIC_BASE_URL in {where} is {url}, the relay this session would serve: its model would be "
                "that relay, so every request would wait for the session itself. Start mcptb-serve without it "
                "(env -u ANTHROPIC_BASE_URL mcptb-serve, or remove it from that settings file): the serving "
                "session must use your own Claude login."
            )
    return None


def main(argv: Sequence[str] | None = None) -> None:
    options, extra = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    codex = options.cli == "codex"
    if options.headless and not codex and not headless(extra):
        extra = ["-p", *extra]
    supervised = options.headless or (not codex and headless(extra))
    if "--settings" in extra and not codex:
        sys.exit(
            "mcptb-serve: --settings is mcptb-serve's own (the hooks that keep the session serving); put your "
            "settings in ~/.claude/settings.json instead."
        )
    name, flag, hint = ("Codex CLI", "codex", CODEX_HINT) if codex else ("Claude Code", "claude", INSTALL_HINT)
    wanted = options.codex if codex else options.claude
    found = find_claude(wanted)
    program = os.path.abspath(found) if found else None  # absolute: the session runs in --workdir
    if program is None:
        where = "on PATH" if os.sep not in wanted else "there"
        sys.exit(
            f"mcptb-serve: {name} ({wanted}) was not found {where}. Install it with `{hint}`, or pass its path "
            f"with --{flag} PATH."
        )
    socket_path = os.path.abspath(options.socket)
    itself = None if codex else self_serving(os.environ, socket_path)
    if itself:
        sys.exit(f"mcptb-serve: {itself}")
    warning = relay_warning(socket_path)
    if warning:
        print(f"mcptb-serve: warning: {warning}.", file=sys.stderr, flush=True)
    workdir = os.path.abspath(options.workdir)  # the session runs there: every path must hold from it
    state_dir = os.path.join(workdir, "sessions")
    try:
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        os.chdir(workdir)
    except OSError as exc:
        sys.exit(
            f"mcptb-serve: cannot use {options.workdir} as the session's directory ({exc.strerror or exc}); "
            "pass another with --workdir"
        )
    record.prune(state_dir)
    env = dict(os.environ)
    # claude -p connects MCP servers in the background by default, and its first model request would go
    # out before mcptb-server has started, without our tools; wait for the server unless told otherwise
    env.setdefault("MCP_CONNECTION_NONBLOCKING", "0")

    def arguments(session: Session, key: str) -> list[str]:
        assert program is not None
        if codex:
            return codex_arguments(program, socket_path, extra, os.environ, session, key)
        return claude_arguments(program, socket_path, extra, os.environ, session)

    if supervised:
        from ._supervisor import supervise

        def command(session_id: str) -> list[str]:
            session = Session(state_dir, options.stop_reminders, options.session_budget, session_id)
            return arguments(session, session_id)

        sys.exit(supervise(command, env, state_dir, options.max_restart_delay, name))
    key = str(uuid.uuid4())
    env[record.SERVE_SESSION_ENV] = key  # names the record, whatever the CLI's own session id
    os.execve(program, arguments(Session(state_dir, options.stop_reminders), key), env)


if __name__ == "__main__":
    main()
