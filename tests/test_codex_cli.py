"""The real Codex CLI as a Responses client of the relay, offline: ``codex exec`` -> ``POST /v1/responses``
(streamed) -> relay -> mcptb-server -> MCP sampling with tools -> a scripted model.

Codex (``@openai/codex``, a dev dependency in tests/node/package.json; ``just test-all`` installs it) runs
with its own ``CODEX_HOME`` and ``HOME``, so the user's ``~/.codex`` is never read or written, and a
config.toml whose custom provider is the relay (``wire_api = "responses"``, the key from an
environment variable), no update check, no analytics, no history, ``--ephemeral``. Its model name
(``mcptb-test``) is not in Codex's model catalog, so it sends the tool set it gives unknown models:
function tools (``exec_command`` ...), its sub-agent tools in a ``namespace`` (``multi_agent_v1``) and
the hosted ``web_search``.

- the round trip: the model runs ``exec_command`` (``echo hi-from-codex``), then the namespaced
  ``multi_agent_v1__close_agent`` (Codex must get it back as ``close_agent`` + ``namespace``, or it
  answers "unsupported call"), then answers quoting the command's output; web_search is left out and
  the relay says so;
- ``--output-schema``: the model first answers JSON that breaks the schema, the worker's repair round
  gets a valid one, and that is what Codex prints.

Both on asyncio and trio; without node, npm or the installed CLI the tests skip, loudly.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import pytest
from claude_code.harness import Run, kill_group, run_bounded

from _doc_blocks import all_blocks
from _scripted import FixedAnswerModel
from conftest import RelayProcess, mcp_worker, posts_logged, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]

CODEX = Path(__file__).resolve().parent / "node" / "node_modules" / ".bin" / "codex"
MODEL_NAME = "mcptb-test"
KEY_ENV = "MCPTB_CODEX_TEST_KEY"
# nothing from the developer's environment that could point Codex at a real account or config
DROPPED_ENV_PREFIXES = ("OPENAI_", "CODEX_", "MCPTB_", "AZURE_", "XDG_")

COMMAND = "echo hi-from-codex"
OUTPUT = "hi-from-codex"
ANSWER_PREFIX = "CODEX SAID: "
CLOSE = "multi_agent_v1__close_agent"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["answer", "count"],
    "additionalProperties": False,
}


@functools.cache
def codex_version() -> str | None:
    """``codex --version`` (``codex-cli 0.171.0``) -> ``0.171.0``; None when it is missing or does not run."""
    if not CODEX.exists():
        return None
    try:
        out = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.split()
    return words[-1] if len(words) == 2 and words[0] == "codex-cli" else None


def skip_reason() -> str | None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"SKIPPED: {'/'.join(missing)} not found - the Codex CLI tests did not run"
    if codex_version() is None:
        return (
            f"SKIPPED: the Codex CLI is not installed at {CODEX} or does not run (run: cd tests/node && "
            "npm install --no-audit --no-fund) - the Codex CLI tests did not run"
        )
    return None


@dataclass
class Codex:
    """One isolated Codex: a fresh CODEX_HOME, HOME and project directory, its provider the relay."""

    workdir: Path
    groups: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in (self.home, self.project):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    @property
    def project(self) -> Path:
        return self.workdir / "project"

    def use_relay(self, relay_url: str, **provider: str) -> None:
        """The relay as Codex's provider; ``provider``: settings of the provider's table (TOML values)."""
        table = {"request_max_retries": "0", "stream_max_retries": "0", **provider}
        (self.home / "config.toml").write_text(
            f'model = "{MODEL_NAME}"\n'
            'model_provider = "mcptb"\n'
            "check_for_update_on_startup = false\n"
            "[analytics]\nenabled = false\n"
            '[history]\npersistence = "none"\n'
            "[model_providers.mcptb]\n"
            'name = "MCP Token Bridge"\n'
            f'base_url = "{relay_url}/v1"\n'
            'wire_api = "responses"\n'
            f'env_key = "{KEY_ENV}"\n' + "".join(f"{key} = {value}\n" for key, value in table.items())
        )

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
        return {**base, "HOME": str(self.home), "CODEX_HOME": str(self.home), KEY_ENV: "unused"}

    def exec(self, prompt: str, *args: str, timeout: float = 60) -> Run:
        """``codex exec --json`` in the project; the sandbox is off: the only command is the model's echo."""
        command = [str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check", "-s", "danger-full-access"]
        return run_bounded(
            [*command, *args, prompt], env=self.env, cwd=self.project, timeout=timeout, groups=self.groups
        )

    def close(self) -> None:
        for pgid in self.groups:
            kill_group(pgid)
        self.groups.clear()


@pytest.fixture
def codex(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    reason = skip_reason()
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    cli = Codex(tmp_path / "codex")
    try:
        yield cli
    finally:
        cli.close()


@pytest.fixture
def relay(relay_process: RelayProcess) -> RelayProcess:
    """Real clients meet the real relay process, as users run it."""
    return relay_process


def events(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def completed(run: Run, kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events(run) if e.get("type") == "item.completed" and e["item"]["type"] == kind]


def diagnostics(run: Run | None, relay: RelayProcess, stderr: str, model: Any) -> str:
    relay_log = "".join(line for line in relay.log_lines if " GET /health " not in line)
    asked = [(len(p.messages), sorted(t.name for t in p.tools or [])[:12]) for p in model.requests]
    return (
        f"{run.describe() if run else 'codex exec did not finish'}\n--- sampling requests (messages, tools) ---\n"
        f"{asked}\n--- relay log (without /health) ---\n{relay_log}\n--- mcptb-server stderr ---\n{stderr}"
    )


@dataclass
class CodexDriver:
    """A model driving Codex's tools: ``exec_command``, then the namespaced close_agent, then the answer.

    The step is the number of tool results in the conversation; a request without Codex's tools (none
    is expected) gets ``OK``."""

    requests: list[types.CreateMessageRequestParams] = field(default_factory=list)

    async def __call__(self, ctx: Any, params: types.CreateMessageRequestParams) -> Any:
        self.requests.append(params)
        offered = {t.name for t in params.tools or []}
        results = self.tool_results
        if {"exec_command", CLOSE} <= offered and len(results) < 2:
            name, arguments = (CLOSE, {"target": "nope"}) if results else ("exec_command", {"cmd": COMMAND})
            call = types.ToolUseContent(id=f"toolu_codex_{len(results) + 1}", name=name, input=arguments)
            return types.CreateMessageResultWithTools(
                role="assistant", model="codex-driver", stop_reason="toolUse", content=[call]
            )
        text = ANSWER_PREFIX + OUTPUT if results and OUTPUT in results[0] else "OK"
        return types.CreateMessageResult(
            role="assistant", model="codex-driver", stop_reason="endTurn", content=types.TextContent(text=text)
        )

    @property
    def tool_results(self) -> list[str]:
        """The texts of the tool results in the last request, in order."""
        if not self.requests:
            return []
        return [
            "\n".join(c.text for c in b.content if isinstance(c, types.TextContent))
            for m in self.requests[-1].messages
            for b in m.content_as_list
            if isinstance(b, types.ToolResultContent)
        ]


async def exec_through_relay(
    codex, relay, backend: str, model: Any, prompt: str, *args: str, provider: dict[str, str] | None = None
) -> tuple[Run, str]:
    """``codex exec`` against the relay, answered by an in-process worker sampling ``model``; the run and
    the diagnostics to print if an assertion fails."""
    codex.use_relay(relay.url, **(provider or {}))
    run: Run | None = None
    failure: AssertionError | None = None
    async with mcp_worker(relay, backend, model=model, sampling_tools=True) as worker:
        try:
            run = await anyio.to_thread.run_sync(lambda: codex.exec(prompt, *args))
        except AssertionError as caught:  # the harness's timeout
            failure = caught
        stderr = worker.stderr
    why = diagnostics(run, relay, stderr, model)
    if failure is not None:
        raise AssertionError(f"{failure}\n{why}") from failure
    assert run is not None
    return run, why


async def test_codex_runs_a_command_and_a_namespaced_tool_through_the_relay(request, codex, relay, backend):
    model = CodexDriver()
    run, why = await exec_through_relay(codex, relay, backend, model, f"Run `{COMMAND}` and tell me what it printed.")
    say(
        request.config,
        f"[Codex {codex_version()} -> relay, {backend}] codex exec wall: {run.wall:.2f} s; "
        f"sampling requests: {len(model.requests)}",
    )
    assert run.returncode == 0, why

    # Codex's request reached the model: its function tools, its namespace's tools by their flat names,
    # not its hosted web search, which the relay names in its log (and in x-mcptb-ignored-tools)
    first = model.requests[0]
    offered = {t.name for t in first.tools or []}
    assert {"exec_command", CLOSE, "multi_agent_v1__spawn_agent"} <= offered, why
    assert "web_search" not in offered, why
    left_out = [line for line in relay.log_lines if "tools left out" in line]
    assert left_out and all(line.rstrip().endswith(": web_search") for line in left_out), why

    # Codex ran the command the model asked for and sent its output back
    (command,) = completed(run, "command_execution")
    assert COMMAND in command["command"] and command["aggregated_output"].strip() == OUTPUT, why
    assert command["exit_code"] == 0, why
    # ... and ran the namespaced tool: its own answer (the id is not an agent's), not "unsupported call"
    assert len(model.requests) == 3, why
    close_result = model.tool_results[-1]
    assert "nope" in close_result and "unsupported call" not in close_result, why
    # the model's answer, quoting the command's output, is Codex's last message
    assert completed(run, "agent_message")[-1]["text"] == ANSWER_PREFIX + OUTPUT, why
    # each of Codex's requests was answered once (200), by one sampling request
    posts = await posts_logged(relay, 0, len(model.requests), "/v1/responses ")
    assert len(posts) == len(model.requests) and all(" status=200 " in line for line in posts), why


async def test_codex_output_schema_gets_json_valid_against_it_after_a_repair_round(request, codex, relay, backend):
    invalid = '{"answer": "four"}'  # misses count
    model = FixedAnswerModel(answers=[invalid, '```json\n{"answer": "four", "count": 4}\n```'])
    schema = codex.workdir / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    prompt = "How much is 2 + 2? Answer in words and as a number."
    run, why = await exec_through_relay(codex, relay, backend, model, prompt, "--output-schema", str(schema))
    say(
        request.config,
        f"[Codex {codex_version()} -> relay, {backend}, --output-schema] codex exec wall: {run.wall:.2f} s; "
        f"sampling requests: {len(model.requests)}",
    )
    assert run.returncode == 0, why
    answer = completed(run, "agent_message")[-1]["text"]
    value = json.loads(answer)
    jsonschema.validate(value, SCHEMA)
    assert value == {"answer": "four", "count": 4}, why
    # the model was told the schema, and asked once more with what was wrong
    first, repair = model.requests
    assert '"count"' in (first.system_prompt or "") and "exactly one JSON value" in (first.system_prompt or ""), why
    assert "'count' is a required property" in repair.messages[-1].content_as_list[0].text, why


def docs_provider() -> dict[str, str]:
    """The provider table of docs/apis.md's Codex snippet, but for what the test sets itself (its ``key = value``
    lines as written: tomllib is not in Python 3.10, and tests/test_docs.py parses the block as TOML)."""
    (block,) = [b for b in all_blocks() if b.kind == "config" and b.arg == "codex" and b.path == "docs/apis.md"]
    table = block.text.split("[model_providers.", 1)[1].split("\n", 1)[1]
    pairs = (line.split(" = ", 1) for line in table.splitlines() if " = " in line)
    return {key: value for key, value in pairs if key not in {"name", "base_url", "wire_api", "env_key"}}


@pytest.mark.parametrize(
    ("provider", "upgrades"),
    [
        (docs_provider(), 0),  # the docs' snippet: no WebSocket try at all
        ({"supports_websockets": "true", "stream_max_retries": "5"}, 1),  # the built-in provider's way
    ],
    ids=["docs-snippet", "websockets-default-retries"],
)
async def test_codex_with_or_without_websockets_uses_http_at_once(request, codex, relay, backend, provider, upgrades):
    """With ``supports_websockets = true`` (the default of Codex's built-in openai provider) Codex first asks
    ``GET /v1/responses`` with ``Upgrade: websocket``: the relay's 426 makes it use HTTP at once - no
    "Reconnecting..." and no retries, even with its retries left at their default (a 405 cost 7 tries and
    about 7 s). With the docs' snippet (``false``) it does not try."""
    model = FixedAnswerModel(answers=["hello over http"])
    run, why = await exec_through_relay(codex, relay, backend, model, "Say hello.", provider=provider)
    tries = [line for line in relay.log_lines if " GET /v1/responses " in line]
    say(
        request.config,
        f"[Codex {codex_version()} -> relay, {provider}, {backend}] codex exec wall: {run.wall:.2f} s; "
        f"WebSocket tries: {len(tries)}",
    )
    assert run.returncode == 0, why
    assert completed(run, "agent_message")[-1]["text"] == "hello over http", why
    assert "Reconnecting" not in run.stdout + run.stderr and "Falling back" not in run.stdout + run.stderr, why
    assert len(tries) == upgrades and all(" status=426 " in line for line in tries), why
