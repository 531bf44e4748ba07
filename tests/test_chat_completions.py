"""Chat completions end to end: HTTP caller -> relay -> mcptb-server -> MCP client's sampling callback.

Real processes throughout, for what crosses the process boundary: the neutral request as the MCP
client's model receives it, the answer's tool calls, the models and health the workers report.
Parsing, the stream's frames and the completion JSON are unit-tested in test_unit_api_chat.py; the
openai SDK and litellm as callers in test_http_clients.py."""

from __future__ import annotations

import json

import pytest

from _http_client import post
from _scripted import MODEL
from conftest import chat_body, mcp_worker

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


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
    assert params.model_preferences.hints[0].name == "m"
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
