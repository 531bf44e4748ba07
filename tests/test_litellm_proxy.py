"""The real litellm proxy in front of the relay: an ``anthropic/`` deployment whose ``api_base`` is the relay.

Client (raw HTTP shaped like Claude Code, or the anthropic SDK) -> litellm proxy ``POST /v1/messages``
-> (``anthropic/`` is a pass-through) relay ``POST /v1/messages`` -> mcptb-server -> MCP sampling -> a
scripted model (:class:`claude_code.scripted_sampling.ToolThenAnswerModel`): it asks for the Bash tool
when the last user turn has no tool_result, and quotes the tool_result when there is one.

The proxy (``litellm --config``, no database, ``num_retries: 0``, a master key) takes 10-20 s to start
on a small machine, so one serves the whole session (tests/_litellm_proxy.py), with one deployment per
relay: a relay on asyncio and one on trio (each test runs on both backends, and its worker on the test's
backend), both started with ``--api-key`` = the deployments' ``api_key``, so the proxy's key handling is
part of the path. Every request body is Claude Code's (``tests/golden/claude_code_2_1_request.json``),
the second one with a tool_result history as in the wire contract's §4.2. Workers with native sampling
tools and workers whose tools are emulated in the prompt (``mcp_server/_emulation.py``).

Skipped, loudly, when ``litellm[proxy]`` is not installed (``just test-all`` installs it).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx
import mcp_types as types
import pytest
from claude_code.harness import BINARIES, ClaudeCode, Run, run_bounded, skip_reason
from claude_code.scripted_sampling import ANSWER_PREFIX, BASH_COMMAND, BASH_OUTPUT, MODEL, ToolThenAnswerModel

from _eventually import eventually
from _litellm_proxy import MASTER_KEY, UPSTREAM_MODEL, Proxies, Proxy
from _sse import named_events
from conftest import RelayProcess, mcp_worker, no_workers, posts_logged, say

pytestmark = [pytest.mark.anyio, pytest.mark.real, pytest.mark.xdist_group("litellm-proxy")]  # one set of proxies

GOLDEN = Path(__file__).parent / "golden"
HISTORY_OUTPUT = "README.md\nsetup.py\nsrc"
MESSAGES = "/v1/messages "
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,mid-conversation-system-2026-04-07",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-api-key": MASTER_KEY,
}


# --- the session's proxy and this module's relays ---------------------------------------------------


@pytest.fixture
def proxy(litellm_proxies: Proxies) -> Proxy:
    return litellm_proxies.default


@pytest.fixture
def relay(litellm_proxies: Proxies, backend: str) -> RelayProcess:
    """The session's relay behind the ``anthropic/`` deployments, for this test's backend."""
    return litellm_proxies.relays[backend]["anthropic"]


# --- request bodies and the Anthropic stream -----------------------------------------------------------


def claude_code_body(backend: str, *, stream: bool = True, history: bool = False) -> dict[str, Any]:
    """Claude Code 2.1's request (golden), for the deployment of ``backend``; with ``history``, the
    conversation goes on with an assistant text + Bash tool_use and a user tool_result + text (§4.2)."""
    body = copy.deepcopy(json.loads((GOLDEN / "claude_code_2_1_request.json").read_text())["body"])
    body["model"] = f"bridge-{backend}"
    body["thinking"] = {"type": "adaptive"}
    body["output_config"] = {"effort": "high"}
    if history:
        body["messages"] += [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "I'll list the files first."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01AbCdEf",
                        "name": "Bash",
                        "input": {"command": "ls", "description": "List files in current directory"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01AbCdEf",
                        "content": HISTORY_OUTPUT,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "continue"},
                ],
            },
        ]
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def parse_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``event:``/``data:`` pairs in order (comments skipped); every data must be the event's type."""
    return named_events(data)


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Check the Anthropic stream contract (§6) and return the final message it describes."""
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    assert names[-2] == "message_delta", names
    message = dict(events[0][1]["message"])
    assert {"input_tokens", "output_tokens"} <= set(message["usage"]), message
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    open_index: int | None = None
    for name, data in events[1:]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(content), events
            open_index = data["index"]
            content.append(dict(data["content_block"]))
            partial[open_index] = ""
        elif name == "content_block_delta":
            assert data["index"] == open_index, events
            delta = data["delta"]
            if delta["type"] == "text_delta":
                content[open_index]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta", delta
                partial[open_index] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index, events
            if content[open_index]["type"] == "tool_use":
                content[open_index]["input"] = json.loads(partial[open_index] or "{}")  # valid JSON
            open_index = None
        elif name == "message_delta":
            assert open_index is None, events
            assert "output_tokens" in data["usage"], data
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **data["usage"]}
        elif name == "error":
            raise AssertionError(f"error event in the stream: {data}")
    message["content"] = content
    return message


@dataclass
class Posted:
    status: int
    headers: httpx.Headers
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


async def post_to_proxy(proxy: Proxy, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> Posted:
    def send() -> Posted:
        started = time.monotonic()
        with httpx.Client(timeout=90) as client:
            response = client.post(proxy.url + path, json=body, headers=CLAUDE_CODE_HEADERS)
        return Posted(response.status_code, response.headers, response.content, time.monotonic() - started)

    return await anyio.to_thread.run_sync(send)


def diagnostics(proxy: Proxy, relay: RelayProcess, since: int, posted: Posted | None = None) -> str:
    relay_log = "".join(line for line in relay.log_lines[since:] if " GET /health " not in line)
    response = f"--- response {posted.status} ---\n{posted.body[:4000]!r}\n" if posted else ""
    return f"{response}--- relay log ---\n{relay_log}\n--- proxy log (tail) ---\n{proxy.log[-4000:]}"


def texts(message: types.SamplingMessage) -> str:
    return "\n".join(b.text for b in message.content_as_list if isinstance(b, types.TextContent))


def check_sampled_claude_code_request(params: types.CreateMessageRequestParams, native: bool) -> None:
    """What the worker got from the passed-through Claude Code request."""
    assert params.model_preferences is not None and params.model_preferences.hints is not None
    assert params.model_preferences.hints[0].name == UPSTREAM_MODEL
    assert params.max_tokens == 64000
    system = params.system_prompt or ""
    assert system.startswith("x-anthropic-billing-header") and "You are Claude Code" in system
    first_user = texts(params.messages[0])
    assert "List the files here" in first_user and "the user prefers short answers" in first_user
    if native:
        assert [t.name for t in params.tools or []] == ["Bash", "Read", "TodoWrite"]
    else:
        assert params.tools is None
        for name in ("Bash", "Read", "TodoWrite"):
            assert f'{{"name": "{name}"' in system


# --- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling_tools", [True, False], ids=["native-tools", "emulated-tools"])
async def test_claude_code_stream_gets_a_tool_use(request, proxy, relay, backend, sampling_tools):
    model = ToolThenAnswerModel()
    since = len(relay.log_lines)
    async with mcp_worker(relay, backend, model=model, sampling_tools=sampling_tools):
        posted = await post_to_proxy(proxy, claude_code_body(backend))
    why = diagnostics(proxy, relay, since, posted)
    label = "native" if sampling_tools else "emulated"
    say(request.config, f"[litellm proxy -> relay, {backend}, {label}] stream, tool_use: {posted.seconds:.2f} s")
    assert posted.status == 200, why
    assert posted.headers["content-type"].startswith("text/event-stream"), why
    message = assemble(parse_sse(posted.body))
    assert message["stop_reason"] == "tool_use", why
    text, call = message["content"]
    assert text == {"type": "text", "text": "Running it."}, why
    assert (call["type"], call["name"], call["input"]) == ("tool_use", "Bash", {"command": BASH_COMMAND}), why
    assert call["id"].startswith(("toolu_", "call_")), why
    assert message["usage"]["output_tokens"] > 0, why
    (params,) = model.requests
    check_sampled_claude_code_request(params, native=sampling_tools)
    (line,) = await posts_logged(relay, since, 1, MESSAGES)  # one backend request: no retries
    assert " status=200 " in line, why


@pytest.mark.parametrize("sampling_tools", [True, False], ids=["native-tools", "emulated-tools"])
async def test_claude_code_stream_with_tool_result_history(request, proxy, relay, backend, sampling_tools):
    model = ToolThenAnswerModel()
    since = len(relay.log_lines)
    async with mcp_worker(relay, backend, model=model, sampling_tools=sampling_tools):
        posted = await post_to_proxy(proxy, claude_code_body(backend, history=True))
    why = diagnostics(proxy, relay, since, posted)
    label = "native" if sampling_tools else "emulated"
    say(request.config, f"[litellm proxy -> relay, {backend}, {label}] stream, tool_result: {posted.seconds:.2f} s")
    assert posted.status == 200, why
    message = assemble(parse_sse(posted.body))
    assert message["stop_reason"] == "end_turn", why
    assert message["content"] == [{"type": "text", "text": ANSWER_PREFIX + HISTORY_OUTPUT}], why
    (params,) = model.requests
    check_sampled_claude_code_request(params, native=sampling_tools)
    (decision,) = model.decisions
    assert decision.kind == "answer" and decision.tool_results == (HISTORY_OUTPUT,), decision
    if sampling_tools:
        (call,) = [b for m in params.messages for b in m.content_as_list if isinstance(b, types.ToolUseContent)]
        assert (call.id, call.name, call.input["command"]) == ("toolu_01AbCdEf", "Bash", "ls")
        (result,) = [b for m in params.messages for b in m.content_as_list if isinstance(b, types.ToolResultContent)]
        assert result.tool_use_id == "toolu_01AbCdEf"
    else:
        history = "\n".join(texts(m) for m in params.messages)
        assert '<tool_call id="toolu_01AbCdEf">{"name": "Bash", "arguments": {"command": "ls"' in history
        assert f'<tool_result id="toolu_01AbCdEf" name="Bash">\n{HISTORY_OUTPUT}\n</tool_result>' in history
    assert texts(params.messages[-1]).endswith("continue")


async def test_claude_code_non_stream(request, proxy, relay, backend):
    model = ToolThenAnswerModel()
    since = len(relay.log_lines)
    async with mcp_worker(relay, backend, model=model, sampling_tools=True):
        asked = await post_to_proxy(proxy, claude_code_body(backend, stream=False))
        answered = await post_to_proxy(proxy, claude_code_body(backend, stream=False, history=True))
    why = diagnostics(proxy, relay, since, asked) + "\n" + diagnostics(proxy, relay, since, answered)
    say(
        request.config,
        f"[litellm proxy -> relay, {backend}] non-stream: {asked.seconds:.2f} s, {answered.seconds:.2f} s",
    )
    assert asked.status == 200 and answered.status == 200, why
    assert asked.headers["content-type"].startswith("application/json"), why
    tool_message = asked.json()
    assert tool_message["type"] == "message" and tool_message["role"] == "assistant", why
    assert tool_message["stop_reason"] == "tool_use", why
    assert tool_message["model"] in (MODEL, f"bridge-{backend}"), why  # the proxy names its model group
    text, call = tool_message["content"]
    assert text == {"type": "text", "text": "Running it."}, why
    assert (call["type"], call["name"], call["input"]) == ("tool_use", "Bash", {"command": BASH_COMMAND}), why
    text_message = answered.json()
    assert text_message["stop_reason"] == "end_turn", why
    assert text_message["content"] == [{"type": "text", "text": ANSWER_PREFIX + HISTORY_OUTPUT}], why
    assert {"input_tokens", "output_tokens"} <= set(text_message["usage"]), why
    assert [d.kind for d in model.decisions] == ["tool_use", "answer"], why
    assert len(await posts_logged(relay, since, 2, MESSAGES)) == 2, why


async def test_anthropic_sdk_stream_helper_through_the_proxy(proxy, relay, backend):
    """The anthropic SDK's ``messages.stream()`` accumulator (strict about the event contract) through the
    proxy: text then a tool_use, and the round trip's second turn."""
    model = ToolThenAnswerModel(tool="get_weather", tool_input={"city": "Paris"}, answer_prefix="weather: ")
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    client = anthropic.Anthropic(base_url=proxy.url, api_key=MASTER_KEY, max_retries=0, timeout=90)

    def stream(messages: list[dict[str, Any]]) -> Any:
        with client.messages.stream(model=f"bridge-{backend}", max_tokens=200, tools=tools, messages=messages) as s:
            return s.get_final_message()

    question = [{"role": "user", "content": "Weather in Paris?"}]
    async with mcp_worker(relay, backend, model=model, sampling_tools=True):
        first = await anyio.to_thread.run_sync(lambda: stream(question))
        call = first.content[1]
        follow_up = [
            *question,
            {"role": "assistant", "content": [c.model_dump(exclude_none=True) for c in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ]
        second = await anyio.to_thread.run_sync(lambda: stream(follow_up))
    assert first.stop_reason == "tool_use" and first.content[0].text == "Running it."
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert second.stop_reason == "end_turn" and second.content[0].text == "weather: sunny, 21 C"
    assert first.usage.output_tokens > 0 and second.usage.input_tokens >= 0


async def _wait_for_no_worker(relay: RelayProcess, timeout: float = 15) -> None:
    await eventually(lambda: no_workers(relay), timeout=timeout, what="the worker gone")


async def test_no_worker_error_reaches_the_client_through_the_proxy(request, proxy, relay, backend):
    """No MCP server connected: the relay's 503 (with how to connect one) reaches the proxy's client as
    an Anthropic error (litellm turns it into a 500 ``api_error`` that quotes the relay's message); stream
    and non-stream. Uses its own deployment (``errors-<backend>``), so a router cooldown cannot touch the
    other tests."""
    await _wait_for_no_worker(relay)
    since = len(relay.log_lines)
    results = []
    for stream in (False, True):
        body = claude_code_body(backend, stream=stream)
        body["model"] = f"errors-{backend}"
        results.append(await post_to_proxy(proxy, body))
    why = "\n".join(diagnostics(proxy, relay, since, p) for p in results)
    say(
        request.config,
        f"[litellm proxy -> relay, {backend}] no worker: "
        + ", ".join(f"{p.status} in {p.seconds:.2f} s" for p in results),
    )
    for posted in results:
        assert posted.status in (500, 503), why  # litellm 1.109 maps an upstream 503 to 500 (api_error)
        error = posted.json()
        assert error["type"] == "error", why
        assert "claude mcp add" in error["error"]["message"], why
    posts = await posts_logged(relay, since, 2, MESSAGES)
    assert len(posts) == 2 and all(" status=503 " in x for x in posts), why


@pytest.mark.node
@pytest.mark.parametrize("label", list(BINARIES))
async def test_claude_code_cli_through_the_proxy(request, proxy, relay, backend, label, tmp_path):
    """The real Claude Code CLI -> litellm proxy -> relay -> worker: the Bash round trip of
    tests/test_claude_code_http.py with the proxy in the middle (``--model`` names the proxy's group)."""
    reason = skip_reason(label)
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    claude = ClaudeCode(label, tmp_path / "claude", model_url=proxy.url)
    env = {**claude.env, "ANTHROPIC_API_KEY": MASTER_KEY}
    args = [str(claude.binary), "-p", f"Run `{BASH_COMMAND}` with Bash", "--model", f"bridge-{backend}"]
    args += ["--output-format", "stream-json", "--verbose", "--allowedTools", "Bash", "--no-session-persistence"]
    model = ToolThenAnswerModel()
    since = len(relay.log_lines)
    run: Run | None = None
    try:
        async with mcp_worker(relay, backend, model=model, sampling_tools=True):
            run = await anyio.to_thread.run_sync(
                lambda: run_bounded(args, env=env, cwd=claude.project, timeout=180, groups=claude.groups)
            )
    finally:
        claude.close()
    why = (run.describe() if run else "") + "\n" + diagnostics(proxy, relay, since)
    say(request.config, f"[Claude Code {claude.version} -> litellm proxy -> relay, {backend}] {run.wall:.2f} s")
    assert run.returncode == 0, why
    assert run.result["result"] == ANSWER_PREFIX + BASH_OUTPUT and not run.result["is_error"], why
    assert [d.kind for _, d in model.main_requests] == ["tool_use", "answer"], why
    assert model.main_requests[1][1].tool_results == (BASH_OUTPUT,), why
    posts = await posts_logged(relay, since, len(model.requests), MESSAGES)
    assert len(posts) == len(model.requests) and all(" status=200 " in line for line in posts), why
