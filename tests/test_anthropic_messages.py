"""Anthropic ``/v1/messages`` through the real relay and mcptb-server, with the anthropic SDK and raw
HTTP: stream and non-stream, ``messages.stream()``, tool use, a Claude-Code-shaped request, errors in
Anthropic's shape. Frames are checked against tests/golden/ (copied from shared/reference/golden/)."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import anyio
import pytest

from _http_client import post, request
from _scripted import LONG_ANSWER, MODEL
from conftest import mcp_worker

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden"
PATH = "/v1/messages"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=relay.url, api_key="unused", max_retries=0, timeout=30)


async def in_thread(fn, *args, **kwargs):
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def body(text: str = "hello", **extra) -> bytes:
    return json.dumps(
        {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


def events_of(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in data.decode().split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


async def test_sdk_create_non_stream(relay, backend):
    async with mcp_worker(relay, backend):
        message = await in_thread(
            client(relay).messages.create,
            model="claude-x",
            max_tokens=50,
            system="Be kind.",
            messages=[{"role": "user", "content": "hi sdk"}],
        )
    assert message.content[0].text == "echo: hi sdk"
    assert message.stop_reason == "end_turn" and message.model == MODEL
    assert message.usage.output_tokens > 0


async def test_sdk_create_stream_and_stream_helper(relay, backend):
    def raw_stream():
        return list(
            client(relay).messages.create(
                model="claude-x", max_tokens=50, stream=True, messages=[{"role": "user", "content": "LONG"}]
            )
        )

    def helper():
        with client(relay).messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi helper"}]
        ) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message()

    async with mcp_worker(relay, backend):
        events = await in_thread(raw_stream)
        text, final = await in_thread(helper)
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == LONG_ANSWER
    assert text == "echo: hi helper"
    assert final.content[0].text == "echo: hi helper" and final.stop_reason == "end_turn"


async def test_sdk_tool_use_stream_and_final_message(relay, backend):
    def helper():
        with client(relay).messages.stream(
            model="claude-x",
            max_tokens=50,
            tools=TOOLS,
            tool_choice={"type": "auto"},
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            return stream.get_final_message()

    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        final = await in_thread(helper)
        plain = await in_thread(
            client(relay).messages.create,
            model="claude-x",
            max_tokens=50,
            tools=TOOLS,
            messages=[{"role": "user", "content": "weather?"}],
        )
    assert final.stop_reason == "tool_use" and plain.stop_reason == "tool_use"
    for message in (final, plain):
        text, tool = message.content
        assert text.text == "Let me check."
        assert (tool.type, tool.id, tool.name, tool.input) == (
            "tool_use",
            "call_scripted_1",
            "get_weather",
            {"city": "Paris"},
        )
    assert worker.model.requests[0].tool_choice.mode == "auto"


async def test_tool_result_turn_reaches_the_model_with_stable_ids(relay, backend):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_scripted_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_scripted_1",
                    "content": [{"type": "text", "text": "sunny"}],
                },
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        response = await post(relay.url, PATH, body(messages=messages, tools=TOOLS))
    assert response.status == 200, response.body
    sampled = worker.model.requests[0].messages
    assert [b.type for b in sampled[1].content_as_list] == ["text", "tool_use"]
    assert sampled[2].content_as_list[0].tool_use_id == "call_scripted_1"
    assert sampled[3].content_as_list[0].text == "and tomorrow?"


async def test_stream_frames_have_the_golden_sequence(relay, backend):
    golden = events_of((GOLDEN / "anthropic_stream_text_then_tool.sse").read_bytes())
    async with mcp_worker(relay, backend, sampling_tools=True):
        response = await post(relay.url, PATH, body("weather?", stream=True, tools=TOOLS))
    assert response.headers["content-type"] == "text/event-stream"
    ours = events_of(response.body)
    for name, data in ours:
        assert data["type"] == name
    squash = lambda evs: [n for i, (n, _) in enumerate(evs) if n != "ping" and (i == 0 or evs[i - 1][0] != n)]  # noqa: E731
    assert squash(ours) == squash(golden)
    start = ours[0][1]["message"]
    assert set(start) == set(golden[0][1]["message"]) and "input_tokens" in start["usage"]
    delta = next(d for n, d in ours if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and "output_tokens" in delta["usage"]
    tool_start = next(d for n, d in ours if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
    assert tool_start["index"] == 1 and tool_start["content_block"]["id"] == "call_scripted_1"


async def test_claude_code_shaped_request_is_accepted(relay, backend):
    recorded = json.loads((GOLDEN / "claude_code_2_1_request.json").read_text())["body"]
    recorded.update(
        {
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
            "temperature": 1,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["STOP"],
            "tool_choice": {"type": "any"},
        }
    )
    recorded["messages"].append(
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "ok"}],
        }
    )
    recorded["messages"].append({"role": "user", "content": "go on"})
    recorded["tools"].append({"type": "web_search_20250305", "name": "web_search", "max_uses": 3})
    headers = {
        "x-api-key": "sk-ant-dummy",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "x-app": "cli",
    }
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        response = await request(relay.url, "POST", "/v1/messages?beta=true", json.dumps(recorded).encode(), headers)
    assert response.status == 200, response.body
    params = worker.model.requests[0]
    assert (
        params.system_prompt.startswith("x-anthropic-billing-header") and "You are Claude Code" in params.system_prompt
    )
    assert params.max_tokens == 64000 and params.stop_sequences == ["STOP"] and params.tool_choice.mode == "required"
    assert "web_search" not in {t.name for t in params.tools}
    first_user = [b.text for b in params.messages[0].content_as_list]
    assert "List the files here" in first_user and any(
        t.startswith("System note: Mid-conversation") for t in first_user
    )
    assert [b.type for b in params.messages[1].content_as_list] == ["text"]  # the thinking block was dropped
    assert events_of(response.body)[-1][0] == "message_stop"


async def test_count_tokens_estimates(relay):
    response = await post(relay.url, "/v1/messages/count_tokens", body("x" * 400))
    assert response.status == 200 and response.json()["input_tokens"] == 100
    assert response.headers["x-mcptb-usage"] == "estimated"


async def test_head_root_answers_like_claude_codes_probe(relay):
    response = await request(relay.url, "HEAD", "/")
    assert response.status == 200 and response.body == b""


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{oops", "not valid JSON"),
        (b'{"model": "m", "max_tokens": 5}', "messages: Field required"),
        (b'{"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "document"}]}]}', "document"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}',
            "base64",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool", "name": "nope"}}',
            "tool_choice",
        ),
    ],
)
async def test_bad_requests_are_anthropic_400s(relay, payload, fragment):
    response = await post(relay.url, PATH, payload)
    assert response.status == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert fragment in error["error"]["message"]


async def test_limits_and_routing_errors_use_anthropic_shape(relay_factory):
    relay = relay_factory("--max-body-bytes", "500", "--api-key", "k")
    too_big = await post(relay.url, PATH, body("x" * 1000), headers={"x-api-key": "k"})
    assert too_big.status == 413 and too_big.json()["error"]["type"] == "request_too_large"
    unauthorized = await post(relay.url, PATH, body())
    assert unauthorized.status == 401 and unauthorized.json()["error"]["type"] == "authentication_error"
    no_worker = await post(relay.url, PATH, body(), headers={"x-api-key": "k"})
    assert no_worker.status == 503 and "claude mcp add" in no_worker.json()["error"]["message"]
    wrong_method = await request(relay.url, "GET", PATH, headers={"x-api-key": "k"})
    assert wrong_method.status == 405 and wrong_method.json()["type"] == "error"


async def test_sdk_errors_and_mid_stream_failure(relay, backend):
    with pytest.raises(anthropic.APIStatusError) as no_worker:
        await in_thread(
            client(relay).messages.create, model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert no_worker.value.status_code == 503

    def stream_refused():
        return list(
            client(relay).messages.create(
                model="m", max_tokens=5, stream=True, messages=[{"role": "user", "content": "REFUSE"}]
            )
        )

    async with mcp_worker(relay, backend):
        with pytest.raises(anthropic.APIStatusError) as mid_stream:
            await in_thread(stream_refused)
    assert "User rejected sampling request" in str(mid_stream.value)


async def test_ping_events_keep_a_waiting_stream_alive(relay, backend):
    async with mcp_worker(relay, backend):
        partial = await post(relay.url, PATH, body("SLOW", stream=True), stop_after=b"event: ping")
    assert partial.body.startswith(b"event: message_start\n")
    assert b'event: ping\ndata: {"type":"ping"}' in partial.body


async def test_worker_faults_use_anthropic_shape(relay_factory, backend):
    relay = relay_factory("--max-queue", "1", "--queue-timeout", "30")
    unknown = await post(relay.url, "/v1/messages/batches", body())
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "not_found_error"
    async with mcp_worker(relay, backend, "--sampling-timeout", "0.5") as worker:
        refused = await post(relay.url, PATH, body("REFUSE"))
        assert refused.status == 502 and refused.json()["error"]["type"] == "api_error"
        assert "User rejected" in refused.json()["error"]["message"]
        timed_out = await post(relay.url, PATH, body("SLOW"))
        assert timed_out.status == 504 and "--sampling-timeout" in timed_out.json()["error"]["message"]
    assert worker.model.cancelled == ["SLOW"]


async def test_queue_full_is_an_anthropic_429_with_retry_after(relay_factory, backend):
    relay = relay_factory("--max-queue", "1", "--queue-timeout", "30")
    async with mcp_worker(relay, backend, sampling=False, wait_ready=False), anyio.create_task_group() as tg:
        tg.start_soon(post, relay.url, PATH, body("first", stream=True))
        with anyio.fail_after(10):
            while (await request(relay.url, "GET", "/health")).json()["queue_depth"] < 1:
                await anyio.sleep(0.05)
        full = await post(relay.url, PATH, body("second"))
        tg.cancel_scope.cancel()
    assert full.status == 429 and full.headers["retry-after"] == "1"
    assert full.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": full.json()["error"]["message"]},
    }
