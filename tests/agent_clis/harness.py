"""Run a relay as a desktop session would, and the Codex and Gemini CLIs as MCP clients of mcptb-server.

The relay runs on its *default* socket path, with ``HOME`` and ``XDG_RUNTIME_DIR`` pointing into a test
directory (so it records its path in that ``HOME``, never in the real one). The CLIs get the same ``HOME``
and none of the developer's ``XDG_*`` variables; they start mcptb-server without ``--socket`` from the
configuration docs/serving.md shows (:data:`CODEX_SNIPPET`, :data:`GEMINI_SNIPPET`; only the command differs:
this checkout's Python with ``-m mcp_server``), so the server has to find the relay by itself, with the
environment its client gives it (Codex: HOME, PATH, USER, TMPDIR... and no XDG_RUNTIME_DIR).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_code.harness import Run, kill_group, run_bounded

from conftest import ROOT, RelayProcess

NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"
CODEX = NODE_BIN / "codex"
GEMINI = NODE_BIN / "gemini"
SERVE_PROMPT = "Serve MCP Token Bridge requests with the mcptb tools"
README_COMMAND = "mcptb-server"
# what is inherited from the developer's environment stops here
DROPPED_ENV_PREFIXES = ("OPENAI_", "CODEX_", "MCPTB_", "AZURE_", "XDG_", "GEMINI_", "GOOGLE_", "ANTHROPIC_")

CODEX_SNIPPET = """\
[mcp_servers.mcptb]
{command}
required = true
tool_timeout_sec = 620
"""
"""docs/serving.md's Codex CLI configuration (``~/.codex/config.toml``); ``{command}`` is the command line(s)."""

GEMINI_SNIPPET = """\
{{
  "mcpServers": {{
    "mcptb": {{ {command}, "trust": true }}
  }}
}}
"""
"""docs/serving.md's Gemini CLI configuration (``~/.gemini/settings.json``)."""


def readme_codex() -> str:
    return CODEX_SNIPPET.format(command=f'command = "{README_COMMAND}"')


def readme_gemini() -> str:
    return GEMINI_SNIPPET.format(command=f'"command": "{README_COMMAND}"')


def server_args(backend: str) -> list[str]:
    return ["-m", "mcp_server", "--backend", backend, "--reconnect-max-delay", "0.5"]


def clean_env(home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
    base.pop("TMPDIR", None)
    return {**base, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


# --- the relay, as started in a desktop terminal -----------------------------------------------------


@dataclass
class Desktop:
    """A home directory and a runtime directory (short: socket paths must stay under ~100 bytes)."""

    home: Path
    runtime: Path

    @classmethod
    def make(cls, home: Path) -> Desktop:
        home.mkdir(parents=True, exist_ok=True)
        runtime = Path(tempfile.mkdtemp(prefix="mcptb-xdg-"))
        runtime.chmod(0o700)
        return cls(home, runtime)

    @property
    def socket(self) -> str:
        return str(self.runtime / "mcp-token-bridge" / "relay.sock")

    @property
    def pointer(self) -> Path:
        return self.home / ".mcp-token-bridge" / "relay-socket"

    def relay_env(self, **extra: str) -> dict[str, str]:
        return {**clean_env(self.home), "XDG_RUNTIME_DIR": str(self.runtime), **extra}

    def cleanup(self) -> None:
        shutil.rmtree(self.runtime, ignore_errors=True)


def start_default_relay(backend: str, env: dict[str, str], *args: str) -> RelayProcess:
    """``python -m relay`` with no --socket (its default path in ``env``), port 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "--port", "0", "--backend", backend, "--keepalive-interval", "0.5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    banner = proc.stdout.readline()
    if not banner:
        raise RuntimeError(f"relay did not start: {proc.stderr.read()}")
    words = banner.split()
    relay = RelayProcess(url=words[3], socket=words[words.index("on", 4) + 1], proc=proc)
    relay.log_lines.append(banner)

    def drain(stream: Any) -> None:
        for line in stream:
            relay.log_lines.append(line)

    threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    return relay


# --- the CLIs ------------------------------------------------------------------------------------------


@functools.cache
def cli_version(binary: Path) -> str | None:
    """``codex-cli 0.171.0`` / ``0.61.0`` -> the version; None when it is missing or does not run."""
    if not binary.exists():
        return None
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.split()
    return words[-1] if words and words[-1][:1].isdigit() else None


def skip_reason(binary: Path, name: str) -> str | None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"SKIPPED: {'/'.join(missing)} not found - the {name} tests did not run"
    if cli_version(binary) is None:
        return (
            f"SKIPPED: the {name} is not installed at {binary} or does not run (run: cd tests/node && npm "
            f"install --no-audit --no-fund) - the {name} tests did not run"
        )
    return None


@dataclass
class AgentCli:
    """One isolated CLI: its HOME (shared with the desktop relay) and a project directory."""

    home: Path
    project: Path
    model_url: str
    backend: str
    groups: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.project.mkdir(parents=True, exist_ok=True)

    def server_command(self) -> tuple[str, list[str]]:
        return sys.executable, server_args(self.backend)

    def close(self) -> None:
        for pgid in self.groups:
            kill_group(pgid)
        self.groups.clear()


@dataclass
class CodexCli(AgentCli):
    tool_timeout: bool = True
    """Write docs/serving.md's ``tool_timeout_sec``; False: leave Codex's default."""

    def configure(self) -> str:
        python, args = self.server_command()
        command = f'command = "{python}"\nargs = {json.dumps(args)}\ncwd = "{ROOT}"'
        mcp = CODEX_SNIPPET.format(command=command)
        if not self.tool_timeout:
            mcp = "".join(line for line in mcp.splitlines(keepends=True) if not line.startswith("tool_timeout_sec"))
        config = (
            'model = "mcptb-test"\nmodel_provider = "scripted"\ncheck_for_update_on_startup = false\n'
            '[analytics]\nenabled = false\n[history]\npersistence = "none"\n'
            f'[model_providers.scripted]\nname = "scripted"\nbase_url = "{self.model_url}/v1"\n'
            'wire_api = "responses"\nenv_key = "SCRIPTED_KEY"\nrequest_max_retries = 0\nstream_max_retries = 0\n' + mcp
        )
        (self.home / ".codex").mkdir(parents=True, exist_ok=True)
        (self.home / ".codex" / "config.toml").write_text(config)
        return config

    def serve(self, timeout: float = 90) -> Run:
        """docs/serving.md's ``codex exec`` command (plus --json and --ephemeral for the test), default
        approval policy and sandbox."""
        self.configure()
        env = {**clean_env(self.home), "CODEX_HOME": str(self.home / ".codex"), "SCRIPTED_KEY": "unused"}
        command = [str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check", SERVE_PROMPT]
        return run_bounded(command, env=env, cwd=self.project, timeout=timeout, groups=self.groups)


@dataclass
class GeminiCli(AgentCli):
    def configure(self) -> dict[str, Any]:
        python, args = self.server_command()
        command = f'"command": {json.dumps(python)}, "args": {json.dumps(args)}, "cwd": {json.dumps(str(ROOT))}'
        settings: dict[str, Any] = json.loads(GEMINI_SNIPPET.format(command=command))
        # the test's own model: an API key for the scripted Gemini API at GOOGLE_GEMINI_BASE_URL
        settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
        (self.home / ".gemini").mkdir(parents=True, exist_ok=True)
        (self.home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))
        return settings

    def serve(self, timeout: float = 90) -> Run:
        """docs/serving.md's ``gemini --skip-trust -p`` command (plus ``-o json`` for the test)."""
        self.configure()
        env = {**clean_env(self.home), "GOOGLE_GEMINI_BASE_URL": self.model_url, "GEMINI_API_KEY": "unused"}
        command = [str(GEMINI), "--skip-trust", "-p", SERVE_PROMPT, "-o", "json"]
        return run_bounded(command, env=env, cwd=self.project, timeout=timeout, groups=self.groups)
