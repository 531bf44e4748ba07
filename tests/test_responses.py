"""OpenAI ``/v1/responses`` through the real relay and mcptb-server, with the openai SDK: stream and
non-stream, the stream helper with a function call. The body litellm's proxy sends, the 400s, the
stream events against tests/golden/ and failed responses are unit-tested in
test_unit_api_responses.py."""

from __future__ import annotations

import json

import openai
import pytest

from _scripted import LONG_ANSWER, MODEL
from conftest import in_thread, mcp_worker

pytestmark = pytest.mark.anyio

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
