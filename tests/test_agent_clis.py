"""The real Codex CLI and Gemini CLI as MCP clients of mcptb-server, offline: an HTTP caller -> the relay
-> mcptb-server -> the CLI's agent, whose model is a scripted API (``agent_clis/scripted_apis.py``) that
calls ``next_request``, then ``reply``.

Set up as a user would (``agent_clis/harness.py``): the relay on its default socket path in a desktop
environment (``XDG_RUNTIME_DIR`` set), each CLI configured with docs/serving.md's snippet, which starts
mcptb-server without ``--socket``; the CLI passes it its own minimal environment, and it finds the relay
by itself. Codex runs ``codex exec`` under its default approval policy and sandbox (the tools'
annotations are what lets it run them), Gemini ``gemini --skip-trust -p`` with ``"trust": true``.

- serving: one chat completion sent once the agent waits is answered with the agent's reply;
- idle: no caller; ``next_request`` with no arguments (the default wait) returns "no request yet" within
  the client's *default* tool timeout (Codex without ``tool_timeout_sec``, Gemini without ``timeout``),
  not a client-side timeout. Codex and Gemini wait side by side, so this costs one default wait per
  backend;
- annotations: with them taken off, ``codex exec`` refuses the call (why they are there).

Both on asyncio and trio (the relay's and mcptb-server's backend); without node, npm or the CLIs the
tests skip, loudly.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import pytest
from agent_clis.harness import (
    CODEX,
    GEMINI,
    AgentCli,
    CodexCli,
    Desktop,
    GeminiCli,
    cli_version,
    readme_codex,
    readme_gemini,
    skip_reason,
    start_default_relay,
)
from agent_clis.scripted_apis import GAVE_UP, NEXT_REQUEST, REPLY, ScriptedApis, ServingAgent
from claude_code.fake_model import ANSWER_PREFIX, SERVED
from claude_code.harness import Run

from mcp_server._core import DEFAULT_WAIT_SECONDS

from _doc_blocks import all_blocks
from _eventually import eventually
from _http_client import get_json, post
from conftest import RelayProcess, chat_body, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]

QUESTION = "What is 6*7?"
CLIS = {"codex": (CODEX, "Codex CLI", CodexCli), "gemini": (GEMINI, "Gemini CLI", GeminiCli)}
DEFAULT_TOOL_TIMEOUTS = {"codex": 300.0, "gemini": 600.0}
"""Each CLI's own tool-call timeout when its configuration sets none (Codex CLI 0.171: 300 s,
``tool_timeout_sec``; Gemini CLI 0.61: ``MCP_DEFAULT_TIMEOUT_MSEC`` = 10 min, ``timeout``)."""


def need(request: pytest.FixtureRequest, name: str) -> None:
    binary, label, _ = CLIS[name]
    reason = skip_reason(binary, label)
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)


@pytest.fixture
def desktop_relay(desktop: Desktop, backend: str) -> Any:
    relay = start_default_relay(backend, desktop.relay_env())
    try:
        yield relay
    finally:
        relay.stop()


async def health(relay: RelayProcess) -> dict[str, Any]:
    result: dict[str, Any] = await get_json(relay.url + "/health")
    return result


def diagnostics(run: Run | None, apis: ScriptedApis, relay: RelayProcess) -> str:
    turns = [(r["n"], r.get("steps"), r.get("decision")) for r in apis.requests]
    relay_log = "".join(line for line in relay.log_lines if " GET /health " not in line)
    return (
        f"{run.describe() if run else 'the CLI did not finish'}\n--- model requests (steps, decision) ---\n"
        f"{turns}\n--- relay log (without /health) ---\n{relay_log}"
    )


async def run_cli(cli: AgentCli, done: anyio.Event, box: list[Any]) -> None:
    try:
        box.append(await anyio.to_thread.run_sync(lambda: cli.serve()))  # type: ignore[attr-defined]
    except Exception as caught:  # the harness's timeout
        box.append(caught)
    finally:
        done.set()


def finished(box: list[Any]) -> Run:
    (outcome,) = box
    if isinstance(outcome, Exception):
        raise outcome
    assert isinstance(outcome, Run)
    return outcome


def final_text(name: str, run: Run) -> str:
    """What the agent said at the end: Codex's last agent_message, Gemini's ``response``."""
    if name == "codex":
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        messages = [
            e["item"]["text"]
            for e in events
            if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
        ]
        return messages[-1] if messages else ""
    start = run.stdout.find("{")
    return str(json.loads(run.stdout[start:]).get("response", "")) if start >= 0 else ""


@pytest.mark.parametrize("name", ["codex", "gemini"])
async def test_an_agent_cli_serves_one_request(request, name, desktop, desktop_relay, backend, tmp_path):
    need(request, name)
    relay = desktop_relay
    apis = ScriptedApis(ServingAgent())
    cli: AgentCli = CLIS[name][2](desktop.home, tmp_path / "project", apis.url, backend)
    done, box = anyio.Event(), []
    answer = None
    started = time.monotonic()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_cli, cli, done, box)

            async def agent_waits() -> dict[str, Any] | None:
                if done.is_set():
                    raise AssertionError(f"{name} ended before its agent waited in next_request")
                workers = (await health(relay))["workers"]
                return workers[0] if workers and workers[0]["free_slots"] > 0 else None

            worker = await eventually(agent_waits, timeout=60, what=f"{name}'s agent waiting in next_request")
            waited = time.monotonic() - started
            sent = time.monotonic()
            with anyio.fail_after(60):
                answer = await post(relay.url, "/v1/chat/completions", chat_body(QUESTION))
            round_trip = time.monotonic() - sent
            with anyio.fail_after(60):
                await done.wait()
    finally:
        cli.close()
        apis.close()
    run = finished(box)
    why = diagnostics(run, apis, relay)
    say(
        request.config,
        f"[{CLIS[name][1]} {cli_version(CLIS[name][0])} -> mcptb-server, {backend}] start to agent waiting: "
        f"{waited:.2f} s; caller round trip: {round_trip:.2f} s; CLI wall: {run.wall:.2f} s",
    )
    assert run.returncode == 0, why
    # the caller got the agent's reply
    assert answer is not None and answer.status == 200, why
    assert answer.json()["choices"][0]["message"]["content"] == ANSWER_PREFIX + QUESTION, why
    # mcptb-server found the relay by itself: the CLI gave it no --socket and no XDG_RUNTIME_DIR
    assert "agent" in worker["modes"], worker
    # the agent's turns: next_request with no arguments (the default wait), reply, then its last word
    decisions = [t["decision"] for t in apis.turns]
    assert [d.get("name", d.get("text")) for d in decisions] == [NEXT_REQUEST, REPLY, SERVED], why
    assert decisions[0]["args"] == {}, why
    request_id = apis.turns[1]["steps"][-1].text.splitlines()[0].removeprefix("request_id:").strip()
    assert decisions[1]["args"] == {"request_id": request_id, "content": ANSWER_PREFIX + QUESTION}, why
    assert apis.turns[2]["steps"][-1].text.startswith("Delivered"), why
    assert final_text(name, run) == SERVED, why
    # what the model learnt of next_request: the default wait and the range, in words
    offered = offered_next_request(name, apis.turns[0]["body"])
    assert f"{DEFAULT_WAIT_SECONDS} seconds by default" in offered["description"], offered


def offered_next_request(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """next_request as the CLI offered it to its model."""
    if name == "codex":
        (tool,) = [
            t
            for ns in body["tools"]
            if ns.get("type") == "namespace"
            for t in ns.get("tools", [])
            if t.get("name") == NEXT_REQUEST
        ]
        return dict(tool)
    (tool,) = [d for t in body["tools"] for d in t.get("functionDeclarations", []) if d["name"].endswith(NEXT_REQUEST)]
    return dict(tool)


async def test_an_idle_next_request_ends_within_each_clients_default_timeout(
    request, desktop, desktop_relay, backend, tmp_path
):
    """No caller: Codex's and Gemini's agents each call next_request with no arguments, under their
    CLI's default tool timeout, and get "no request yet" after the default wait - a normal tool result,
    not a timeout - then stop (max_polls=1)."""
    for name in CLIS:
        need(request, name)
    relay = desktop_relay
    clis: dict[str, tuple[AgentCli, ScriptedApis]] = {}
    for name in CLIS:
        apis = ScriptedApis(ServingAgent(max_polls=1))
        cli: AgentCli = CLIS[name][2](desktop.home, tmp_path / f"project-{name}", apis.url, backend)
        if isinstance(cli, CodexCli):
            cli.tool_timeout = False  # Codex's own default
        clis[name] = (cli, apis)
    boxes: dict[str, list[Any]] = {name: [] for name in clis}
    try:
        async with anyio.create_task_group() as tg:
            for name, (cli, _) in clis.items():
                tg.start_soon(run_cli, cli, anyio.Event(), boxes[name])
    finally:
        for cli, apis in clis.values():
            cli.close()
            apis.close()
    assert not (await health(relay))["queue_depth"]
    for name, (_cli, apis) in clis.items():
        run = finished(boxes[name])
        why = diagnostics(run, apis, relay)
        assert run.returncode == 0, why
        decisions = [t["decision"] for t in apis.turns]
        assert [d.get("name", d.get("kind")) for d in decisions] == [NEXT_REQUEST, "text"], why
        assert decisions[0]["args"] == {}, why
        result = apis.turns[1]["steps"][-1]
        assert not result.error and result.text.startswith(f"No request yet (waited {DEFAULT_WAIT_SECONDS} s)"), why
        waited = apis.turns[1]["t"] - apis.turns[0]["t"]
        assert DEFAULT_WAIT_SECONDS <= waited < DEFAULT_TOOL_TIMEOUTS[name], why
        assert final_text(name, run).startswith(GAVE_UP), why
        say(
            request.config,
            f"[{CLIS[name][1]} {cli_version(CLIS[name][0])}, {backend}] idle next_request (default wait "
            f"{DEFAULT_WAIT_SECONDS} s, client default timeout {DEFAULT_TOOL_TIMEOUTS[name]:g} s): tool result "
            f"after {waited:.2f} s; CLI wall: {run.wall:.2f} s",
        )


def test_the_docs_show_the_configurations_these_tests_run():
    """The docs' ``config codex-mcp`` and ``config gemini-settings`` blocks (docs/serving.md) are what
    these tests write."""
    written = {"codex-mcp": [readme_codex()], "gemini-settings": [readme_gemini()]}
    shown = {kind: [b.text for b in all_blocks() if b.kind == "config" and b.arg == kind] for kind in written}
    assert shown == written


class UnannotatedCodex(CodexCli):
    """Codex with an mcptb-server whose tools have their annotations taken off."""

    def server_command(self) -> tuple[str, list[str]]:
        code = (
            "import mcp_server._agent as a\n"
            "for t in (a.NEXT_REQUEST_TOOL, a.REPLY_TOOL, a.SHOW_REQUEST_TOOL): t.annotations = None\n"
            "from mcp_server.cli import main\n"
            f"main(['--backend', {self.backend!r}])"
        )
        return sys.executable, ["-c", code]


async def test_codex_refuses_the_tools_without_their_annotations(request, desktop, desktop_relay, backend, tmp_path):
    """Why the annotations are there: under Codex's default approval policy ``codex exec`` refuses an MCP
    tool that is neither read-only nor marked non-destructive and closed-world."""
    need(request, "codex")
    apis = ScriptedApis(ServingAgent(max_polls=1, next_args={"wait_seconds": 1}))
    cli = UnannotatedCodex(desktop.home, tmp_path / "project", apis.url, backend)
    try:
        run = await anyio.to_thread.run_sync(lambda: cli.serve())
    finally:
        cli.close()
        apis.close()
    why = diagnostics(run, apis, desktop_relay)
    assert run.returncode == 0, why
    (result,) = [s for s in apis.turns[-1]["steps"] if s.kind == "result"]
    assert result.text == "MCP tool call requires approval, but approval policy is never", why
