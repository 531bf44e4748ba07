"""The real litellm proxy in front of the relay's OpenAI endpoints: ``openai/`` and ``hosted_vllm/``
deployments whose ``api_base`` is ``<relay>/v1`` (the wire contract's §4.1).

- default settings, ``openai/``: an Anthropic ``/v1/messages`` request (Claude Code's) is sent to the
  relay's ``POST /v1/responses``, also with ``thinking: {"type": "enabled"}``; with ``/v1/messages`` in the
  deployment's ``supported_endpoints``, to the relay's ``POST /v1/messages``;
- ``hosted_vllm/``: the same request goes to ``POST /v1/chat/completions``;
- ``litellm_settings.use_chat_completions_url_for_anthropic_messages: true`` with ``openai/``: to
  ``POST /v1/chat/completions`` too (but ``thinking: {"type": "enabled"}`` still to ``/v1/responses``);
- the proxy's own ``/v1/chat/completions`` (the openai SDK, ``stream_options.include_usage``);
- a model group of two deployments, each a relay with its own worker: both get traffic, and when one
  relay stops the proxy keeps answering from the other.

Two proxies (default settings and the chat-completions flag) start once per test session, side by side
(10-20 s each on a small machine; tests/_litellm_proxy.py); the relays too, one set per backend, and each
test's worker runs on the test's backend. Which relay endpoint a request reached is read from the relay's
access log.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import openai
import pytest
from test_litellm_proxy import GOLDEN, assemble, parse_sse

from _eventually import eventually
from _litellm_proxy import COOLDOWN_TIME, MASTER_KEY, REQUEST_TIMEOUT, Proxies, Proxy
from conftest import RelayProcess, mcp_worker, posts_logged, posts_since, say

pytestmark = [pytest.mark.anyio, pytest.mark.real, pytest.mark.xdist_group("litellm-proxy")]  # one set of proxies

HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-api-key": MASTER_KEY,
}


# --- the session's proxies and relays ---------------------------------------------------------------


@pytest.fixture
def relay(litellm_proxies: Proxies, backend: str) -> RelayProcess:
    return litellm_proxies.relays[backend]["main"]


# --- requests and checks -----------------------------------------------------------------------------


def claude_code_body(model: str, *, thinking: bool = False, stream: bool = True) -> dict[str, Any]:
    """Claude Code 2.1's request (golden) with a Bash tool_use + tool_result history (§4.2)."""
    body = copy.deepcopy(json.loads((GOLDEN / "claude_code_2_1_request.json").read_text())["body"])
    body["model"] = model
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
                {"type": "tool_result", "tool_use_id": "toolu_01AbCdEf", "content": "README.md\nsetup.py\nsrc"},
                {"type": "text", "text": "continue"},
            ],
        },
    ]
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": 2000}
    body["stream"] = stream
    return body


@dataclass
class Posted:
    status: int
    headers: httpx.Headers
    body: bytes
    seconds: float


async def post(proxy: Proxy, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> Posted:
    def send() -> Posted:
        started = time.monotonic()
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            response = client.post(proxy.url + path, json=body, headers=HEADERS)
        return Posted(response.status_code, response.headers, response.content, time.monotonic() - started)

    return await anyio.to_thread.run_sync(send)


def why(proxy: Proxy, relays: list[RelayProcess], since: list[int], posted: Posted | None = None) -> str:
    logs = "".join(
        "".join(line for line in r.log_lines[s:] if " GET /health " not in line)
        for r, s in zip(relays, since, strict=True)
    )
    response = f"--- response {posted.status} ---\n{posted.body[:4000]!r}\n" if posted else ""
    return f"{response}--- relay log ---\n{logs}\n--- proxy log (tail) ---\n{proxy.log[-4000:]}"


async def check_claude_code_stream(
    request: pytest.FixtureRequest,
    proxy: Proxy,
    relay: RelayProcess,
    backend: str,
    model: str,
    endpoint: str,
    *,
    trailing_empty_text: bool = False,
    **kw: Any,
) -> None:
    """A streamed Claude Code request through ``proxy`` to ``model``: a valid Anthropic stream with the
    scripted text and tool_use, and one relay request at ``endpoint``. ``trailing_empty_text``: litellm
    adds an empty text block after the tool_use (seen on the chat-flag proxy's /v1/responses path only;
    the relay's /v1/responses stream is the same as on the default proxy, where there is none)."""
    since = len(relay.log_lines)
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        posted = await post(proxy, claude_code_body(model, **kw))
    diag = why(proxy, [relay], [since], posted)
    say(request.config, f"[proxy {model} {kw or ''} -> relay {endpoint}] stream: {posted.seconds:.2f} s")
    assert posted.status == 200, diag
    assert posted.headers["content-type"].startswith("text/event-stream"), diag
    events = parse_sse(posted.body)  # every frame has event: and data: of the same type
    message = assemble(events)  # message_start ... message_stop, blocks opened/closed in order
    assert message["stop_reason"] == "tool_use", diag
    blocks = [b for b in message["content"] if b["type"] != "thinking"]
    if trailing_empty_text:
        assert blocks[2:] == [{"type": "text", "text": ""}], diag
        blocks = blocks[:2]
    assert [b["type"] for b in blocks] == ["text", "tool_use"], diag
    assert blocks[0]["text"] == "Let me check.", diag
    assert (blocks[1]["name"], blocks[1]["input"]) == ("Bash", {"command": "Paris"}), diag  # input JSON parsed
    assert message["usage"]["output_tokens"] > 0, diag
    (params,) = worker.model.requests
    assert [t.name for t in params.tools or []] == ["Bash", "Read", "TodoWrite"]
    (line,) = await posts_logged(relay, since, 1)
    assert f" POST {endpoint} " in line and " status=200 " in line, diag


# --- 1. default settings, openai/: /v1/responses -----------------------------------------------------


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking-enabled"])
async def test_openai_deployment_uses_responses(request, litellm_proxies, relay, backend, thinking):
    await check_claude_code_stream(
        request, litellm_proxies.default, relay, backend, f"resp-{backend}", "/v1/responses", thinking=thinking
    )


async def test_an_openai_deployment_listing_v1_messages_passes_anthropic_requests_through(
    request, litellm_proxies, relay, backend
):
    """``model_info.supported_endpoints`` with ``/v1/messages`` (docs/litellm-proxy.md): Claude Code's request
    reaches the relay's own ``POST /v1/messages`` untranslated, not ``/v1/responses``."""
    await check_claude_code_stream(request, litellm_proxies.default, relay, backend, f"pass-{backend}", "/v1/messages")


# --- 2. hosted_vllm/, the chat-completions flag, the proxy's own chat completions --------------------


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking-enabled"])
async def test_hosted_vllm_deployment_uses_chat_completions(request, litellm_proxies, relay, backend, thinking):
    await check_claude_code_stream(
        request, litellm_proxies.default, relay, backend, f"vllm-{backend}", "/v1/chat/completions", thinking=thinking
    )


@pytest.mark.parametrize(
    ("thinking", "endpoint"),
    [(False, "/v1/chat/completions"), (True, "/v1/responses")],
    ids=["plain", "thinking-enabled"],
)
async def test_chat_completions_flag(request, litellm_proxies, relay, backend, thinking, endpoint):
    """With the flag, openai/ goes to chat/completions, except thinking: enabled (still /v1/responses,
    and litellm's stream then ends with an extra empty text block)."""
    await check_claude_code_stream(
        request,
        litellm_proxies.chat_flag,
        relay,
        backend,
        f"chat-{backend}",
        endpoint,
        thinking=thinking,
        trailing_empty_text=thinking,
    )


@pytest.mark.parametrize("deployment", ["resp", "vllm"])
async def test_openai_sdk_chat_completions_through_the_proxy(request, litellm_proxies, relay, backend, deployment):
    proxy = litellm_proxies.default
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=REQUEST_TIMEOUT)

    def stream() -> list[Any]:
        chunks = client.chat.completions.create(
            model=f"{deployment}-{backend}",
            messages=[{"role": "user", "content": "hello proxy"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(chunks)

    since = len(relay.log_lines)
    started = time.monotonic()
    async with mcp_worker(relay, backend, sampling_tools=True):
        chunks = await anyio.to_thread.run_sync(stream)
    say(request.config, f"[openai SDK -> proxy {deployment}-{backend}] chat stream: {time.monotonic() - started:.2f} s")
    diag = why(proxy, [relay], [since])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello proxy", diag
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0 and usage[-1].prompt_tokens > 0, diag
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"], diag
    (line,) = await posts_logged(relay, since, 1)
    assert " POST /v1/chat/completions " in line and " status=200 " in line, diag


# --- 3. two relays behind one model group ------------------------------------------------------------


async def test_two_relays_share_a_model_group_and_one_can_stop(request, litellm_proxies, backend):
    proxy = litellm_proxies.default
    a, b = litellm_proxies.relays[backend]["team-a"], litellm_proxies.relays[backend]["team-b"]
    model = f"team-{backend}"
    since = [len(a.log_lines), len(b.log_lines)]

    def body(i: int) -> dict[str, Any]:
        return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": f"hi {i}"}]}

    def hits(relay: RelayProcess, start: int) -> int:
        return sum(" status=200 " in line for line in posts_since(relay, start))

    started = time.monotonic()
    async with mcp_worker(a, backend) as worker_a, mcp_worker(b, backend) as worker_b:
        # both relays get traffic (the router picks at random: bounded at 30 requests)
        sent = 0
        while sent < 30 and not (hits(a, since[0]) and hits(b, since[1])):
            posted = await post(proxy, body(sent), "/v1/messages")
            assert posted.status == 200, why(proxy, [a, b], since, posted)
            assert json.loads(posted.body)["content"][0]["text"] == f"echo: hi {sent}"
            sent += 1
        balanced = time.monotonic() - started
        diag = why(proxy, [a, b], since)
        assert hits(a, since[0]) and hits(b, since[1]), diag
        assert len(worker_a.model.requests) + len(worker_b.model.requests) == sent
        assert all(" POST /v1/responses " in line for line in posts_since(a, since[0]) + posts_since(b, since[1])), diag

        # every request so far is in the logs (a line comes after its answer), then relay b stops:
        # requests may fail until the router cools b down, then all go to a
        await eventually(lambda: hits(a, since[0]) + hits(b, since[1]) == sent, what="the logs caught up")
        b.stop()
        after = [len(a.log_lines), len(b.log_lines)]
        stopped = time.monotonic()
        statuses: list[int] = []
        first_error = b""
        deadline = stopped + 4 * COOLDOWN_TIME + 20
        while time.monotonic() < deadline and statuses[-10:] != [200] * 10:
            posted = await post(proxy, body(100 + len(statuses)), "/v1/messages")
            statuses.append(posted.status)
            if posted.status != 200:
                first_error = first_error or posted.body
                await anyio.sleep(0.2)
        recovered = time.monotonic() - stopped
    say(
        request.config,
        f"[proxy team-{backend}] both relays hit after {sent} requests ({balanced:.2f} s); relay b stopped: "
        f"statuses {statuses}, 10 in a row OK after {recovered:.2f} s; first error: {first_error[:300]!r}",
    )
    diag = why(proxy, [a], after[:1]) + f"\nstatuses after the stop: {statuses}"
    assert statuses[-10:] == [200] * 10, diag
    logged = await posts_logged(a, after[0], statuses.count(200))
    assert sum(" status=200 " in line for line in logged) == statuses.count(200), diag
