"""Drive the real Claude Code CLI offline: an isolated HOME, the scripted fake model, bounded runs.

Claude Code is installed by npm into ``tests/node`` (``just test-all`` does it): the newest release as
``@anthropic-ai/claude-code`` and 2.1.197 (the last that speaks MCP's 2025 handshake era) under the alias
``claude-code-2025``. Each package's postinstall copies the native binary over ``bin/claude.exe``; where
that did not happen, :func:`skip_reason` says why the tests cannot run.

Every run gets the environment of ``reference/claude-code-offline.md``: its own ``HOME`` (so the user's
``~/.claude*`` is never read or written), no non-essential traffic, no updater, telemetry or error
reports, MCP servers connected before the first model request (``MCP_CONNECTION_NONBLOCKING=0``), and
``ANTHROPIC_BASE_URL`` pointing at :mod:`fake_model`. Every process is started in its own session with a
timeout; on timeout its whole process group (Claude Code and the MCP server it spawned) is killed, and
:meth:`ClaudeCode.close` kills whatever is left of the groups it started.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE.parent / "node"
FAKE_MODEL = HERE / "fake_model.py"

# label -> the native binary npm installed for it (see tests/node/package.json)
BINARIES = {
    "newest": NODE_DIR / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe",
    "2.1.197": NODE_DIR / "node_modules" / "claude-code-2025" / "bin" / "claude.exe",
}
VERSION_LINE = re.compile(r"^(\d+\.\d+\.\d+) \(Claude Code\)")

# what is inherited from the developer's environment stops here: nothing that could point Claude Code
# at a real account, another config directory or other MCP servers
DROPPED_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "MCP_", "MCPTB_", "AWS_", "GOOGLE_", "VERTEX_")


@functools.cache
def installed_version(label: str) -> str | None:
    """The version the binary reports, or None when it is missing or is npm's placeholder stub."""
    binary = BINARIES[label]
    if not binary.is_file():
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION_LINE.match(out.strip())
    return match.group(1) if match else None


def skip_reason(label: str) -> str | None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"SKIPPED: {'/'.join(missing)} not found - the Claude Code CLI tests did not run"
    if installed_version(label) is None:
        return (
            f"SKIPPED: the Claude Code CLI ({label}) is not installed at {BINARIES[label]} or does not run "
            "(run: cd tests/node && npm install --no-audit --no-fund; its postinstall must be allowed to "
            "copy the native binary) - the Claude Code CLI tests did not run"
        )
    return None


# --- bounded subprocesses --------------------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n-> rc={self.returncode} in {self.wall:.2f} s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    @property
    def events(self) -> list[dict[str, Any]]:
        """``--output-format stream-json`` lines."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    @property
    def init(self) -> dict[str, Any]:
        (init,) = [e for e in self.events if e.get("type") == "system" and e.get("subtype") == "init"]
        return init

    @property
    def result(self) -> dict[str, Any]:
        (result,) = [e for e in self.events if e.get("type") == "result"]
        return result


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def processes_with_home(home: Path) -> list[int]:
    """The live processes (of this user) whose environment says ``HOME=home``: everything a test's Claude Code
    started, in whatever process group or session (``mcptb-serve``'s supervisor gives each session its own)."""
    needle = b"\0HOME=" + os.fsencode(str(home)) + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if needle in b"\0" + environ.read():  # a zombie's environment reads empty
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_left_with_home(home: Path, within: float = 5.0) -> list[int]:
    """:func:`processes_with_home` once none is left, or after ``within`` seconds: a process in a group of
    its own (an MCP server, a hook) ends by itself when its parent's pipes close, a moment after it."""
    deadline = time.monotonic() + within
    while (found := processes_with_home(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def kill_processes_with_home(home: Path) -> None:
    for pid in processes_with_home(home):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _live_processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live process (from /proc/*/stat; zombies left out)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                state, ppid, pgrp = stat.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z":
            found.append((int(entry.name), int(ppid), int(pgrp)))
    return found


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    return [child for child, parent, _ in _live_processes() if parent == pid]


def group_members(pgid: int) -> list[int]:
    """The live processes in process group ``pgid``."""
    return [pid for pid, _, group in _live_processes() if group == pgid]


@dataclass
class Background:
    """A process running in a session of its own, its output going to files that can be read while it runs."""

    args: list[str]
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    start: float

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def run(self) -> Run:
        """What it did so far (returncode -1 while it runs)."""
        code = self.proc.poll()
        return Run(self.args, -1 if code is None else code, self.stdout, self.stderr, time.monotonic() - self.start)

    def finish(self, sig: int = signal.SIGINT, timeout: float = 30) -> Run:
        """Send ``sig`` to its process group, as a terminal's Ctrl-C would, and wait for it to exit; past
        ``timeout`` its group is killed and the Run says rc=-9 (so the test fails, showing the output)."""
        if self.proc.poll() is None:
            kill_group(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()
            return dataclasses.replace(self.run(), returncode=-9)
        return self.run()


def start_background(
    args: list[str], *, env: dict[str, str], cwd: Path, logdir: Path, groups: list[int] | None = None
) -> Background:
    logdir.mkdir(parents=True, exist_ok=True)
    out, err = logdir / "stdout", logdir / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
        )
    if groups is not None:
        groups.append(proc.pid)
    return Background([str(a) for a in args], proc, out, err, time.monotonic())


class Terminal:
    """``args`` on a pseudo-terminal (120x40) in a session of its own; a thread keeps reading the screen."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, groups: list[int] | None = None) -> None:
        self.controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdin=terminal, stdout=terminal, stderr=terminal,
            start_new_session=True,
        )  # fmt: skip
        if groups is not None:
            groups.append(self.proc.pid)
        os.close(terminal)
        self.screen = b""
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self.controller], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.controller, 65536)
                except OSError:  # the terminal closed: the session ended
                    return
                if not data:
                    return
                self.screen += data

    def send(self, data: bytes) -> None:
        os.write(self.controller, data)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._closed = True
        self._reader.join(5)
        os.close(self.controller)


def run_bounded(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float, groups: list[int] | None = None
) -> Run:
    """Run to completion in a new session; kill its whole process group if it outlives ``timeout``."""
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if groups is not None:
        groups.append(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        run = Run([str(a) for a in args], -9, stdout, stderr, time.monotonic() - start)
        raise AssertionError(f"timed out after {timeout} s (process group killed):\n{run.describe()}") from None
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise
    return Run([str(a) for a in args], proc.returncode, stdout, stderr, time.monotonic() - start)


# --- the fake model --------------------------------------------------------------------------------


@dataclass
class FakeModelProcess:
    proc: subprocess.Popen[str]
    port: int
    logdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request it received, in order (the ``req_NNN.json`` records)."""
        return [json.loads(p.read_text()) for p in sorted(self.logdir.glob("req_*.json"))]

    @property
    def messages_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "decision" in r]

    @property
    def stderr(self) -> str:
        path = self.logdir / "fake.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_fake_model(logdir: Path, timeout: float = 20, **env: str) -> FakeModelProcess:
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / "fake.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(FAKE_MODEL), str(logdir)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, **env},
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise AssertionError(f"fake model did not start: {line!r}\n{(logdir / 'fake.err').read_text()}")
    return FakeModelProcess(proc, int(line.split()[1]), logdir)


# --- Claude Code -----------------------------------------------------------------------------------


@dataclass
class ClaudeCode:
    """One isolated Claude Code installation state: a fresh HOME and a project directory."""

    label: str
    workdir: Path
    model_url: str = "http://127.0.0.1:9"  # set to the fake model's URL before running ``-p``
    groups: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.project.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    @property
    def binary(self) -> Path:
        return BINARIES[self.label]

    @property
    def version(self) -> str:
        return installed_version(self.label) or "?"

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    @property
    def project(self) -> Path:
        return self.workdir / "project"

    @property
    def tmp(self) -> Path:
        return self.workdir / "tmp"

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
        base.pop("XDG_CONFIG_HOME", None)
        return {
            **base,
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),  # Claude Code's own sockets (cc-socks/) land here, not in /tmp
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "MCP_CONNECTION_NONBLOCKING": "0",
            "MCP_TIMEOUT": "30000",
            "MCP_TOOL_TIMEOUT": "120000",
            "ANTHROPIC_BASE_URL": self.model_url,
            "ANTHROPIC_API_KEY": "sk-ant-dummy",
            "PYTHONUNBUFFERED": "1",
            # MCP servers it starts with this Python import this checkout, not the one installed editable
            "PYTHONPATH": str(HERE.parent.parent),
        }

    def run(self, *args: str, timeout: float = 60) -> Run:
        return run_bounded(
            [str(self.binary), *args], env=self.env, cwd=self.project, timeout=timeout, groups=self.groups
        )

    def mcp_add_bridge(self, socket: str, backend: str, name: str = "mcptb") -> Run:
        command = [sys.executable, "-m", "mcp_server", "--socket", socket, "--backend", backend]
        run = self.run("mcp", "add", name, "--", *command, timeout=30)
        assert run.returncode == 0, run.describe()
        return run

    def print_mode(self, prompt: str, *allowed_tools: str, timeout: float = 120) -> Run:
        """``claude -p`` with only the MCP tools (``--tools ""``), stream-json output, no session file."""
        args = ["-p", prompt, "--output-format", "stream-json", "--verbose", "--tools", ""]
        if allowed_tools:
            args += ["--allowedTools", ",".join(allowed_tools)]
        return self.run(*args, "--no-session-persistence", timeout=timeout)

    def close(self) -> None:
        """Kill what is left of every process group this object started (e.g. a leaked MCP server), and
        every other process running with its HOME."""
        for pgid in self.groups:
            kill_group(pgid)
        self.groups.clear()
        kill_processes_with_home(self.home)  # e.g. the sessions mcptb-serve's supervisor started
