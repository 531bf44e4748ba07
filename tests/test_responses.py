"""OpenAI ``/v1/responses`` through the real relay and mcptb-server, with the openai SDK and raw HTTP:
stream and non-stream, the stream helper, function calls, the body litellm's proxy sends, errors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import openai
import pytest

from _http_client import post
from _scripted import LONG_ANSWER, MODEL
from conftest import mcp_worker

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden"
PATH = "/v1/responses"
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def client(relay) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)


async def in_thread(fn, *args, **kwargs):
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def events_of(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in data.decode().split("\n\n"):
        if frame and not frame.startswith(":"):
            name, payload = frame.split("\n")
            out.append((name.removeprefix("event: "), json.loads(payload.removeprefix("data: "))))
    return out


async def test_sdk_create_non_stream_and_stream(relay, backend):
    def streamed():
        return list(client(relay).responses.create(model="gpt-x", input="LONG", stream=True))

    async with mcp_worker(relay, backend) as worker:
        response = await in_thread(
            client(relay).responses.create,
            model="gpt-x",
            instructions="Be brief.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi responses"}]}],
            max_output_tokens=40,
        )
        events = await in_thread(streamed)
    assert response.output_text == "echo: hi responses" and response.status == "completed"
    assert response.model == MODEL and response.usage.total_tokens > 0
    assert worker.model.requests[0].system_prompt == "Be brief." and worker.model.requests[0].max_tokens == 40
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == LONG_ANSWER


async def test_sdk_stream_helper_with_a_function_call(relay, backend):
    def helper():
        with client(relay).responses.stream(model="gpt-x", input="weather?", tools=TOOLS) as stream:
            for _ in stream:
                pass
            return stream.get_final_response()

    async with mcp_worker(relay, backend, sampling_tools=True):
        final = await in_thread(helper)
    kinds = [item.type for item in final.output]
    assert kinds == ["message", "function_call"]
    call = final.output[1]
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_scripted_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert final.output_text == "Let me check."


async def test_stream_has_the_golden_event_sequence_for_a_tool_call(relay, backend):
    golden = [name for name, _ in events_of((GOLDEN / "responses_stream_tool.sse").read_bytes())]
    body = json.dumps({"model": "m", "input": "weather?", "tools": TOOLS, "stream": True}).encode()
    async with mcp_worker(relay, backend, sampling_tools=True):
        response = await post(relay.url, PATH, body)
    ours = events_of(response.body)
    names = [n for n, _ in ours]
    calls_only = [n for n in names if "output_text" not in n and "content_part" not in n]
    dedupe = lambda seq: [n for i, n in enumerate(seq) if i == 0 or seq[i - 1] != n]  # noqa: E731
    message_item = names.index("response.output_item.added")
    assert names[message_item + 1] == "response.content_part.added"
    assert dedupe(calls_only[:2] + calls_only[4:]) == dedupe(golden)
    completed = ours[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["total_tokens"] > 0
    assert [item["type"] for item in completed["output"]] == ["message", "function_call"]


async def test_the_body_litellms_proxy_sends_is_understood(relay, backend):
    recorded = json.loads((GOLDEN / "litellm_proxy_to_responses.json").read_text())["body"]
    async with mcp_worker(relay, backend, sampling_tools=True) as worker:
        response = await post(relay.url, PATH, json.dumps(recorded).encode())
    assert response.status == 200, response.body
    params = worker.model.requests[0]
    assert params.system_prompt and params.max_tokens == recorded["max_output_tokens"]
    roles = [(m.role, [b.type for b in m.content_as_list]) for m in params.messages]
    assert roles == [
        ("user", ["text", "text"]),
        ("assistant", ["text", "tool_use"]),
        ("user", ["tool_result"]),
        ("user", ["text"]),
    ]
    assert events_of(response.body)[-1][0] == "response.completed"


async def test_text_item_then_output_text_done_carries_the_whole_text(relay, backend):
    body = json.dumps({"model": "m", "input": "hello", "stream": True}).encode()
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, body)
    by_name = {n: d for n, d in events_of(response.body)}
    assert by_name["response.output_text.done"]["text"] == "echo: hello"
    assert by_name["response.output_item.done"]["item"]["content"][0]["text"] == "echo: hello"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [{"type": "computer_call"}]}, "input[0].type"),
        ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],
            },
            "input[0].content[0].image_url.url",
        ),
    ],
)
async def test_bad_requests_are_openai_400s_naming_the_field(relay, payload, param):
    response = await post(relay.url, PATH, json.dumps(payload).encode())
    assert response.status == 400
    assert response.json()["error"]["param"] == param


async def test_failure_mid_stream_is_response_failed(relay, backend):
    body = json.dumps({"model": "m", "input": "REFUSE", "stream": True}).encode()
    async with mcp_worker(relay, backend):
        response = await post(relay.url, PATH, body)
    name, data = events_of(response.body)[-1]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert "User rejected" in data["response"]["error"]["message"]
