"""The Responses API to the letter of openai-python's own types: every streamed event, a whole response,
a failed stream and ``POST /v1/responses/input_tokens``, validated in pydantic's strict mode (the SDK itself
builds them without checking; strict readers - typed clients, Rust's serde - do check). The app on a real
broker with scripted workers; the SDK's input_tokens call through the relay in process. Both backends."""

from __future__ import annotations

import anyio
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from _app_driver import in_process
from _scripted import half_then_fail
from _sse import named_events
from conftest import in_thread, mcp_worker

pytestmark = pytest.mark.anyio

PATH = "/v1/responses"
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
ANSWER = [
    Start(id="-", model="m"),
    TextDelta(id="-", text="Let me "),
    TextDelta(id="-", text="check."),
    ToolCall(id="-", call_id="call_1", name="weather", arguments={"city": "Oslo"}),
    End(id="-", stop_reason="toolUse"),
]


def strict_events(body: bytes) -> list[tuple[str, object]]:
    out = []
    for name, data in named_events(body):
        event = EVENTS.validate_python(data, strict=True)
        assert event.type == name
        out.append((name, event))
    return out


async def test_every_streamed_event_is_valid_under_the_openai_types():
    async with in_process(ANSWER) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "weather?", "tools": [TOOL], "stream": True})
    events = strict_events(response.body)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert {"response.output_text.delta", "response.output_text.done", "response.function_call_arguments.done"} <= set(
        names
    )
    assert [e.sequence_number for _, e in events] == list(range(len(events)))
    completed = events[-1][1]
    assert completed.response.usage.input_tokens_details.cache_write_tokens == 0  # type: ignore[union-attr]


async def test_a_whole_response_is_valid_under_the_openai_types():
    async with in_process(ANSWER) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "weather?", "tools": [TOOL]})
    parsed = Response.model_validate(response.json(), strict=True)
    assert parsed.output_text == "Let me check." and parsed.usage is not None


async def test_a_failed_stream_is_valid_and_ends_as_openais_do():
    script = [
        Start(id="-", model="m"),
        TextDelta(id="-", text="half"),
        ErrorFrame(id="-", code="client_error", message="boom"),
    ]
    async with in_process(script) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "x", "stream": True})
    events = strict_events(response.body)
    (error_name, error), (failed_name, failed) = events[-2:]
    assert error_name == "error" and error.message == "boom" and error.code == "client_error"  # type: ignore[attr-defined]
    assert failed_name == "response.failed" and failed.response.error.code == "server_error"  # type: ignore[attr-defined]
    done = [e for name, e in events if name == "response.output_item.done"]
    assert done[-1].item.status == "incomplete" and done[-1].item.content[0].text == "half"  # type: ignore[attr-defined]
    raw = [data for name, data in named_events(response.body) if name == "error"]
    assert raw[0]["error"] == {"type": "upstream_error", "code": "client_error", "message": "boom", "param": None}


async def test_the_sdk_counts_input_tokens(relay, backend):
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    async with mcp_worker(relay, backend):
        counted = await in_thread(
            client.responses.input_tokens.count, model="m", input="How many tokens is this sentence?"
        )
        raw = await in_thread(
            client.responses.input_tokens.with_raw_response.count, model="m", input="How many tokens?"
        )
    assert counted.object == "response.input_tokens" and 5 <= counted.input_tokens <= 12
    assert raw.headers["x-mcptb-usage"] == "estimated"


async def test_the_openai_sdk_raises_on_a_stream_that_fails(relay, backend):
    """openai-python raises an APIError for an event carrying an ``error`` object - what makes a failed
    stream a failure for its callers (``llm``, the Agents SDK) rather than half an answer."""
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key="unused", max_retries=0, timeout=30)

    def read() -> list[str]:
        seen = []
        for event in client.responses.create(model="m", input="FAIL please", stream=True):
            seen.append(event.type)
        return seen

    async with anyio.create_task_group() as tg:
        await tg.start(half_then_fail, relay.socket)
        with pytest.raises(openai.APIError) as failed:
            await in_thread(read)
        tg.cancel_scope.cancel()
    assert "the model broke off" in failed.value.message
