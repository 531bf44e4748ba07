"""Chat completions end to end: HTTP caller -> relay -> mcptb-server -> MCP client's sampling callback.

Real processes throughout; frames are checked against shared/reference/wire-contract.md."""

from __future__ import annotations

import json

import pytest

from _http_client import post
from _scripted import LONG_ANSWER, MODEL
from conftest import chat_body, mcp_worker

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


def data_events(events: list[str]) -> list[str]:
    return [e.removeprefix("data: ") for e in events if e.startswith("data: ")]


async def test_non_stream_answer_carries_model_finish_reason_and_estimated_usage(relay, backend):
    async with mcp_worker(relay, backend) as worker:
        response = await post(relay.url, PATH, chat_body("hello there"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-mcptb-usage"] == "estimated"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    choice = body["choices"][0]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "echo: hello there", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = body["usage"]
    assert usage["completion_tokens"] == len("echo: hello there") // 4 + 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    params = worker.model.requests[0]
    assert params.model_preferences.hints[0].name == "test-model"


async def test_stream_follows_the_wire_contract(relay, backend):
    body = chat_body("stream me", stream=True, stream_options={"include_usage": True})
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, body)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    events = response.sse_events
    assert all(e.startswith(("data: ", ": keep-alive")) for e in events), events  # never event:/id:/retry:
    datas = data_events(events)
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert {"id", "created", "model", "choices"} <= chunk.keys()
        assert all("index" in c for c in chunk["choices"])
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: stream me"
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    # the finish chunk, the usage chunk and [DONE] are adjacent: nothing between them
    assert events[-3:] == ["data: " + datas[-3], "data: " + datas[-2], "data: [DONE]"]


async def test_stream_without_include_usage_has_no_usage_chunk(relay, backend):
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, chat_body("hi", stream=True))
    chunks = [json.loads(d) for d in data_events(response.sse_events)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_long_answer_goes_out_in_one_frame_not_one_per_character(relay, backend):
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, chat_body("LONG please", stream=True))
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in data_events(response.sse_events)[1:-2]]
    assert contents == [LONG_ANSWER]


async def test_conversation_shapes_reach_the_model_as_sampling_messages(relay, backend):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        },
        {"role": "user", "content": "and tell me"},
        {"role": "assistant", "content": "It is a pixel."},
        {"role": "user", "content": "thanks"},
    ]
    body = json.dumps(
        {
            "model": "m",
            "messages": messages,
            "max_completion_tokens": 77,
            "temperature": 0.25,
            "stop": "END",
            "top_k": 5,
            "user": "u1",
            "unknown_field": {"x": 1},
        }
    ).encode()
    async with mcp_worker(relay, backend) as worker:
        response = await post(relay.url, PATH, body)
    assert response.status == 200, response.body
    params = worker.model.requests[0]
    assert params.system_prompt == "Be brief.\n\nAnswer in English."
    assert params.max_tokens == 77 and params.temperature == 0.25 and params.stop_sequences == ["END"]
    assert [m.role for m in params.messages] == ["user", "assistant", "user"]
    first = params.messages[0].content_as_list
    assert [b.type for b in first] == ["text", "image", "text"]
    assert first[1].data == png and first[1].mime_type == "image/png"


async def test_assistant_tool_calls_and_tool_results_become_tool_use_blocks(relay, backend):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "additionalProperties": False,
                },
            },
        }
    ]
    body = json.dumps({"model": "m", "messages": messages, "tools": tools, "tool_choice": "auto"}).encode()
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        response = await post(relay.url, PATH, body)
    assert response.status == 200, response.body
    params = worker.model.requests[0]
    assert [b.type for b in params.messages[1].content_as_list] == ["tool_use"]
    assert params.messages[1].content_as_list[0].input == {"city": "Oslo"}
    result = params.messages[2].content_as_list[0]
    assert result.type == "tool_result" and result.tool_use_id == "call_1"
    assert params.tools[0].name == "get_weather" and params.tool_choice.mode == "auto"
    message = response.json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] == "Let me check."
    assert message["message"]["tool_calls"] == [
        {
            "id": "call_scripted_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]


async def test_streamed_tool_call_sends_name_once_with_whole_arguments(relay, backend):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = chat_body("weather?", tools=tools, stream=True, stream_options={"include_usage": True})
    async with mcp_worker(relay, backend, sampling_tools=True):
        response = await post(relay.url, PATH, body)
    chunks = [json.loads(d) for d in data_events(response.sse_events)[:-1]]
    calls = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_scripted_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_models_lists_the_workers_model_and_health_reports_it(relay, backend):
    from _http_client import get_json

    async with mcp_worker(relay, backend, client_name="Pytest Client"):
        await post(relay.url, PATH, chat_body("hi"))
        models = await get_json(relay.url + "/v1/models")
        health = await get_json(relay.url + "/health")
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == "pytest-client" and MODEL in ids
    assert all(m["object"] == "model" for m in models["data"])
    (worker,) = health["workers"]
    assert worker["client"] == {"name": "Pytest Client", "version": "1.0"}
    assert worker["modes"] == ["sampling", "agent"] and worker["protocol_version"] == "2025-11-25"
    assert health["queue_depth"] == 0 and health["in_flight"] == 0
