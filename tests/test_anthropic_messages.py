"""Anthropic ``/v1/messages`` through the real relay and mcptb-server, with the anthropic SDK and raw
HTTP: stream and non-stream, ``messages.stream()``, tool use, errors the SDK maps, ping keep-alives,
Claude Code's probes, the body limit. Parsing (Claude Code's request shape, the 400s), the frames
against tests/golden/ and every error in Anthropic's shape are unit-tested in
test_unit_api_anthropic.py."""

from __future__ import annotations

import json

import anthropic
import pytest

from _http_client import post, request
from _inprocess import relay_in_process
from _scripted import LONG_ANSWER, MODEL
from conftest import in_thread, mcp_worker

pytestmark = pytest.mark.anyio

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


def body(text: str = "hello", **extra) -> bytes:
    return json.dumps(
        {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


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
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == [LONG_ANSWER]  # 1,000 characters from the model, one frame on the wire
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


async def test_claude_codes_probes_head_root_and_count_tokens_with_its_query(relay):
    response = await request(relay.url, "HEAD", "/")
    assert response.status == 200 and response.body == b""
    counted = await post(relay.url, "/v1/messages/count_tokens?beta=true", body("x" * 400))
    assert counted.status == 200 and counted.json() == {"input_tokens": 33}  # one chunk, 400 ASCII characters


async def test_a_body_over_the_limit_is_anthropics_request_too_large(backend):
    async with relay_in_process(max_body_bytes=500) as relay:
        too_big = await post(relay.url, PATH, body("x" * 1000))
        assert too_big.status == 413 and too_big.json()["error"]["type"] == "request_too_large"


async def test_sdk_errors_and_mid_stream_failure(relay, backend):
    async with relay_in_process(worker_grace=0) as lonely:
        with pytest.raises(anthropic.APIStatusError) as no_worker:
            await in_thread(
                client(lonely).messages.create, model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
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
