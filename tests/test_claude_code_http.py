"""The real Claude Code CLI as an HTTP client of the relay: ``ANTHROPIC_BASE_URL`` = the relay, offline.

Claude Code -> ``POST /v1/messages`` (streamed) -> relay -> mcptb-server -> MCP sampling -> a scripted
model (:class:`claude_code.scripted_sampling.ToolThenAnswerModel`), the sampling callback of the
``mcp`` SDK ClientSession that runs mcptb-server (:func:`conftest.mcp_worker`). The model asks for
Claude Code's built-in Bash tool (``echo hi-from-bash``); Claude Code runs it (allowed with
``--allowedTools Bash``) and sends the tool_result back in its next request; the model then answers
``BASH SAID: hi-from-bash``, which ``claude -p`` must print as its result.

Two workers: one whose MCP client declares ``sampling.tools`` (tools, tool_use and tool_result travel as
native sampling content) and one that does not, so mcptb-server emulates tool use in the prompt
(``mcp_server/_emulation.py``). Both Claude Code versions installed in ``tests/node`` (the newest and
2.1.197), on asyncio and trio. Without node, npm or the installed CLI the tests skip, loudly.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from claude_code.harness import ClaudeCode, Run, run_bounded, skip_reason
from claude_code.scripted_sampling import ANSWER_PREFIX, BASH_COMMAND, BASH_OUTPUT, ToolThenAnswerModel

from _eventually import eventually
from conftest import RelayProcess, mcp_worker, posts_logged, say

pytestmark = [pytest.mark.anyio, pytest.mark.node]


@pytest.fixture
def relay(relay_process):
    """Real clients meet the real relay process, as users run it."""
    return relay_process


PROMPT = f"Use the Bash tool to run `{BASH_COMMAND}` and tell me what it printed."
FINAL = ANSWER_PREFIX + BASH_OUTPUT


def _diagnostics(run: Run | None, model: ToolThenAnswerModel, relay: RelayProcess, stderr: str) -> str:
    relay_log = "".join(line for line in relay.log_lines if " GET /health " not in line)
    decisions = "\n".join(repr(d) for d in model.decisions)
    return (
        f"{run.describe() if run else 'claude -p did not finish'}\n--- sampling decisions ---\n{decisions}\n"
        f"--- relay log (without /health) ---\n{relay_log}\n--- mcptb-server stderr ---\n{stderr}"
    )


def _message_blocks(message: types.SamplingMessage) -> list[Any]:
    return list(message.content_as_list)


@pytest.mark.parametrize("sampling_tools", [True, False], ids=["native-tools", "emulated-tools"])
async def test_claude_code_runs_bash_through_the_relay(request, claude, relay, backend, sampling_tools):
    model = ToolThenAnswerModel()
    claude.model_url = relay.url
    run: Run | None = None
    failure: AssertionError | None = None
    async with mcp_worker(relay, backend, model=model, sampling_tools=sampling_tools) as worker:
        try:
            run = await anyio.to_thread.run_sync(
                lambda: claude.run(
                    "-p",
                    PROMPT,
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--allowedTools",
                    "Bash",
                    "--no-session-persistence",
                    timeout=180,
                )
            )
        except AssertionError as caught:  # the harness's timeout
            failure = caught
        stderr = worker.stderr
    why = _diagnostics(run, model, relay, stderr)
    if failure is not None:
        raise AssertionError(f"{failure}\n{why}") from failure
    assert run is not None
    way = "native" if sampling_tools else "emulated"
    say(
        request.config,
        f"[Claude Code {claude.version} -> relay, {backend}, {way} tools] claude -p wall: {run.wall:.2f} s; "
        f"sampling requests: {[d.kind for d in model.decisions]}",
    )

    # Claude Code finished with the model's final answer, which quotes the Bash output
    assert run.returncode == 0, why
    result = run.result
    assert result["subtype"] == "success" and not result["is_error"], why
    assert result["result"] == FINAL, why
    # ... after running Bash as the model asked, and showing the model's tool_use and the tool_result
    events = run.events
    tool_uses = [
        b
        for e in events
        if e.get("type") == "assistant"
        for b in e["message"]["content"]
        if b.get("type") == "tool_use"
    ]
    assert [(t["name"], t["input"]) for t in tool_uses] == [("Bash", {"command": BASH_COMMAND})], why
    tool_results = [
        b
        for e in events
        if e.get("type") == "user"
        for b in e["message"]["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    assert len(tool_results) == 1 and tool_results[0]["tool_use_id"] == tool_uses[0]["id"], why
    assert BASH_OUTPUT in json.dumps(tool_results[0]["content"]) and not tool_results[0].get("is_error"), why

    # the worker saw the round trip: a request offering Bash, then one carrying Bash's result
    main = model.main_requests
    assert [d.kind for _, d in main] == ["tool_use", "answer"], why
    (first, asked), (second, answered) = main
    assert asked.way == way and "Bash" in asked.offered, why
    assert answered.tool_results == (BASH_OUTPUT,), why

    if sampling_tools:
        # native: the tool_use went out as an Anthropic tool_use with our id, and came back with its result
        assert {t.name for t in first.tools or []} >= {"Bash"}, why
        history = second.messages
        (call,) = [
            b
            for m in history
            if m.role == "assistant"
            for b in _message_blocks(m)
            if isinstance(b, types.ToolUseContent)
        ]
        assert (call.id, call.name, call.input) == (tool_uses[0]["id"], "Bash", {"command": BASH_COMMAND}), why
        assert call.id == "toolu_scripted_1", why
        (result_block,) = [b for b in _message_blocks(history[-1]) if isinstance(b, types.ToolResultContent)]
        assert result_block.tool_use_id == call.id and not result_block.is_error, why
    else:
        # emulated: no native tools; the tools were listed in the system prompt and the history was text
        assert first.tools is None and second.tools is None, why
        assert "<tools>" in (first.system_prompt or "") and '"name": "Bash"' in (first.system_prompt or ""), why
        history_text = "\n".join(
            b.text for m in second.messages for b in _message_blocks(m) if isinstance(b, types.TextContent)
        )
        assert f'{{"name": "Bash", "arguments": {{"command": "{BASH_COMMAND}"}}}}</tool_call>' in history_text, why
        assert f'<tool_call id="{tool_uses[0]["id"]}">' in history_text, why
        assert f'<tool_result id="{tool_uses[0]["id"]}" name="Bash">' in history_text, why
    # every /v1/messages Claude Code sent was answered (200) by exactly one sampling request
    posts = await posts_logged(relay, 0, len(model.requests), "/v1/messages ")
    assert len(posts) == len(model.requests) and all(" status=200 " in line for line in posts), why


async def test_relay_api_key_is_claude_codes_api_key(request, claude, relay_factory, backend):
    """A relay started with ``--api-key``: Claude Code's ``ANTHROPIC_API_KEY`` (sent as ``x-api-key``) and
    ``ANTHROPIC_AUTH_TOKEN`` (``Authorization: Bearer``) get answers; a wrong key gets the relay's 401 in
    Anthropic's shape, which Claude Code reports at once instead of an answer, and no worker is asked.
    (Claude Code would retry a 401 ten times over about two minutes; the relay's ``x-should-retry:
    false`` stops that, so the wrong key costs exactly one request.)"""
    key = "sk-relay-secret"
    relay = relay_factory("--api-key", key)
    model = ToolThenAnswerModel(side_answer="hello from the relay")
    claude.model_url = relay.url
    base = {k: v for k, v in claude.env.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")}
    args = [str(claude.binary), "-p", "say hello", "--output-format", "json", "--tools", "", "--no-session-persistence"]

    def run(**auth: str) -> Run:
        return run_bounded(args, env={**base, **auth}, cwd=claude.project, timeout=120, groups=claude.groups)

    async with mcp_worker(relay, backend, model=model) as worker:
        runs = {}
        for label, auth in [
            ("x-api-key", {"ANTHROPIC_API_KEY": key}),
            ("bearer", {"ANTHROPIC_AUTH_TOKEN": key}),
            ("wrong key", {"ANTHROPIC_API_KEY": "sk-wrong"}),
        ]:
            runs[label] = await anyio.to_thread.run_sync(lambda auth=auth: run(**auth))
        stderr = worker.stderr
    why = "\n".join(f"=== {label} ===\n{r.describe()}" for label, r in runs.items())
    why += "\n" + _diagnostics(None, model, relay, stderr)
    say(
        request.config,
        f"[Claude Code {claude.version} -> relay --api-key, {backend}] "
        + ", ".join(f"{label}: {r.wall:.2f} s" for label, r in runs.items()),
    )
    for label in ("x-api-key", "bearer"):
        result = json.loads(runs[label].stdout)
        assert runs[label].returncode == 0 and not result["is_error"], why
        assert result["result"] == "hello from the relay", why
    wrong = json.loads(runs["wrong key"].stdout)
    assert runs["wrong key"].returncode != 0 and wrong["is_error"], why
    assert wrong["api_error_status"] == 401 and wrong.get("api_error_type", "authentication_error") == (
        "authentication_error"
    ), why
    assert "API key" in wrong["result"], why
    assert len(model.requests) == 2 and all(d.kind == "side" for d in model.decisions), why
    statuses = [line.split(" status=")[1].split()[0] for line in await posts_logged(relay, 0, 3, "/v1/messages ")]
    assert statuses == ["200", "200", "401"], why


async def test_no_worker_message_reaches_claude_code(request, claude, relay_factory, backend):
    """No MCP server connected: after the worker grace, Claude Code shows the relay's 503 message, which
    says how to connect one. (Claude Code retries a 5xx ten times with backoff, about three minutes, even
    with the relay's ``x-should-retry: false``, which it honours for 4xx only;
    ``CLAUDE_CODE_MAX_RETRIES=0`` keeps this test short.)"""
    relay = relay_factory("--worker-grace", "1")
    claude.model_url = relay.url
    env = {**claude.env, "CLAUDE_CODE_MAX_RETRIES": "0"}
    args = [str(claude.binary), "-p", "say hello", "--output-format", "json", "--tools", "", "--no-session-persistence"]
    run = await anyio.to_thread.run_sync(
        lambda: run_bounded(args, env=env, cwd=claude.project, timeout=120, groups=claude.groups)
    )
    why = run.describe() + "\n--- relay log ---\n" + relay.log
    say(request.config, f"[Claude Code {claude.version} -> relay without worker, {backend}] {run.wall:.2f} s")
    result = json.loads(run.stdout)
    assert run.returncode == 1 and result["is_error"] and result["api_error_status"] == 503, why
    assert "No MCP server connected to this relay within 1 s" in result["result"], why
    assert "mcptb-serve" in result["result"] and "claude mcp add --scope user" in result["result"], why


async def test_claude_code_does_not_ask_a_model_that_failed_again(request, claude, relay, backend):
    """The MCP client's model failed on this input (MCP error -32603): Claude Code, with its default retries
    (ten, for a 5xx even with ``x-should-retry: false``), reports the relay's 424 after one model turn."""
    claude.model_url = relay.url
    args = [str(claude.binary), "-p", "FAIL now", "--output-format", "json", "--tools", "", "--no-session-persistence"]
    async with mcp_worker(relay, backend) as worker:
        run = await anyio.to_thread.run_sync(
            lambda: run_bounded(args, env=claude.env, cwd=claude.project, timeout=120, groups=claude.groups)
        )
    why = run.describe() + "\n--- relay log ---\n" + relay.log
    say(request.config, f"[Claude Code {claude.version} -> relay, model fails, {backend}] {run.wall:.2f} s")
    result = json.loads(run.stdout)
    assert run.returncode == 1 and result["is_error"] and result["api_error_status"] == 424, why
    assert "The model failed on this input" in result["result"], why
    assert len(worker.model.requests) == 1, why


async def test_claude_code_runs_bash_through_an_agent_worker(request, claude, relay, backend):
    """The third worker mode: the relay's requests are answered by an agent pulling them with
    ``next_request`` and answering with ``reply`` (here the mcp SDK's ClientSession, without sampling,
    scripted): first a ``tool_calls`` reply asking Claude Code to run Bash, then text quoting its result."""
    claude.model_url = relay.url
    served: list[str] = []

    async def serve(session) -> None:
        while True:
            result = await session.call_tool("next_request", {"wait_seconds": 30})
            text = "".join(b.text for b in result.content if isinstance(b, types.TextContent))
            if not text.startswith("request_id: "):
                continue
            request_id = text.split("\n", 1)[0].removeprefix("request_id: ")
            if "(tool result for " in text:
                output = text.split("(tool result for ", 1)[1].split("\n", 1)[1].split("\n(end of conversation)")[0]
                served.append("answer")
                reply = {"request_id": request_id, "content": ANSWER_PREFIX + output.strip()}
            elif "- Bash:" in text:
                served.append("tool")
                reply = {
                    "request_id": request_id,
                    "content": "",
                    "tool_calls": [{"name": "Bash", "arguments": {"command": BASH_COMMAND}}],
                }
            else:
                served.append("side")
                reply = {"request_id": request_id, "content": "ok"}
            await session.call_tool("reply", reply)

    async with mcp_worker(relay, backend, sampling=False, wait_ready=False) as worker, anyio.create_task_group() as tg:
        tg.start_soon(serve, worker.session)
        run = await anyio.to_thread.run_sync(
            lambda: claude.run(
                "-p",
                PROMPT,
                "--output-format",
                "stream-json",
                "--verbose",
                "--allowedTools",
                "Bash",
                "--no-session-persistence",
                timeout=180,
            )
        )
        tg.cancel_scope.cancel()
    why = run.describe() + "\n--- relay log ---\n" + relay.log + f"\nserved: {served}"
    say(
        request.config,
        f"[Claude Code {claude.version} -> relay -> agent worker, {backend}] claude -p wall: {run.wall:.2f} s",
    )
    assert run.returncode == 0 and run.result["result"] == FINAL, why
    assert served.count("tool") == 1 and served.count("answer") == 1, why


async def test_a_claude_code_session_whose_model_is_the_relay_it_serves_is_told_at_once(
    request, claude, relay, backend
):
    """Issue 15: such a session waited for itself for 2 min 40 s (eleven retries), then was told to run
    /mcp__mcptb__serve, which it had just done. Its mcptb-server reports the session id Claude Code gives
    it; the session's own request carries it, so the relay refuses it at once, and the ``retry-after``
    over 60 s stops Claude Code's retries (no CLAUDE_CODE_MAX_RETRIES here)."""
    from mcp_server._serve_session import TOOLS, Session, mcp_config

    claude.model_url = relay.url
    config = mcp_config(relay.socket, {"MCPTB_BACKEND": backend}, Session("/nowhere", 3))
    args = [str(claude.binary), "-p", "/mcp__mcptb__serve", "--mcp-config", config, "--strict-mcp-config",
            "--allowedTools", ",".join(TOOLS), "--tools", "", "--output-format", "json", "--no-session-persistence"]  # fmt: skip
    env = {**claude.env, "MCP_CONNECTION_NONBLOCKING": "0"}
    run = await anyio.to_thread.run_sync(
        lambda: run_bounded(args, env=env, cwd=claude.project, timeout=120, groups=claude.groups)
    )
    why = run.describe() + "\n--- relay log ---\n" + relay.log
    say(request.config, f"[Claude Code {claude.version} -> the relay it serves, {backend}] {run.wall:.2f} s")
    result = json.loads(run.stdout)
    assert run.returncode == 1 and result["is_error"] and result["api_error_status"] == 503, why
    assert "waiting for itself" in result["result"] and "ANTHROPIC_BASE_URL" in result["result"], why
    assert run.wall < 30, why  # not ten retries
    posts = [line for line in relay.log_lines if "POST /v1/messages" in line]
    assert len(posts) == 1 and " status=503 " in posts[0], why  # a real status, even for a stream; no retry


async def test_claude_code_discovers_the_relays_models_by_the_gateway_protocol(request, relay, backend, tmp_path):
    """``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`` (and ``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``, whose
    ``x-claude-code-request-class`` the access log shows): Claude Code warms the connection with ``HEAD
    /api/hello``, asks ``GET /v1/models?limit=1000`` and keeps, with their ``display_name`` and
    ``description``, the ids containing ``claude`` or ``anthropic`` (its gateway protocol) - the Claude
    Code worker's ``claude-code``, not a VS Code worker's ``visual-studio-code``. The newest Claude Code
    on both backends: the one of 2025 has no model discovery."""
    reason = skip_reason("newest")
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    claude = ClaudeCode("newest", tmp_path / "claude", model_url=relay.url)
    env = {**claude.env, "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1", "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1"}
    del env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]  # which also turns off the warm-up
    args = [str(claude.binary), "-p", "say hello", "--output-format", "json", "--tools", "", "--no-session-persistence"]
    cache = claude.home / ".claude" / "cache" / "gateway-models.json"
    try:
        async with (
            mcp_worker(relay, backend, client_name="claude-code"),
            mcp_worker(relay, backend, client_name="Visual Studio Code", wait_ready=False),
        ):
            run = await anyio.to_thread.run_sync(
                lambda: run_bounded(args, env=env, cwd=claude.project, timeout=120, groups=claude.groups)
            )
    finally:
        claude.close()
    why = run.describe() + "\n--- relay log ---\n" + relay.log
    say(request.config, f"[Claude Code {claude.version} discovers the relay's models, {backend}] {run.wall:.2f} s")
    assert run.returncode == 0, why
    await eventually(lambda: " HEAD /api/hello " in relay.log and " GET /v1/models " in relay.log, timeout=10)
    kept = json.loads(cache.read_text())
    assert [m["id"] for m in kept["models"]] == ["claude-code"], kept
    assert kept["models"][0]["display_name"] == "claude-code (claude-code 1.0)", kept
    assert "MCP sampling" in kept["models"][0]["description"], kept
    # with its gateway hint headers on, the request's class is read: in the access log (and on /metrics)
    await eventually(lambda: " POST /v1/messages " in relay.log, timeout=10)
    posts = [line for line in relay.log_lines if " POST /v1/messages " in line]
    assert posts and all(" class=" in line for line in posts), why
