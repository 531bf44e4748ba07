"""The OpenAI Responses adapter without processes: the body litellm's proxy sends and the 400s, the
stream events against the golden frames (tests/golden/, copied from shared/reference/golden/),
incomplete and failed responses, keep-alives. The app runs in-process on a real broker with a
scripted worker (tests/_app_driver.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay._collect import Answer
from relay._errors import RelayError
from relay._responses import parse_request, response_json
from relay._usage import UsageEstimate
from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from _app_driver import in_process

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden"
PATH = "/v1/responses"
MODEL = "mock-model"
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
TEXT_THEN_TOOL = [
    Start(id="-", model=MODEL),
    TextDelta(id="-", text="Let me check."),
    ToolCall(id="-", call_id="call_scripted_1", name="get_weather", arguments={"city": "Paris"}),
    End(id="-", stop_reason="toolUse"),
]


def text_answer(text: str, stop: str = "endTurn") -> list:
    return [Start(id="-", model=MODEL), TextDelta(id="-", text=text), End(id="-", stop_reason=stop)]


def events_of(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in data.decode().split("\n\n"):
        if frame and not frame.startswith(":"):
            name, payload = frame.split("\n")
            out.append((name.removeprefix("event: "), json.loads(payload.removeprefix("data: "))))
    return out


async def test_the_body_litellms_proxy_sends_is_understood():
    recorded = json.loads((GOLDEN / "litellm_proxy_to_responses.json").read_text())["body"]
    async with in_process(text_answer("done")) as relay:
        response = await relay.post(PATH, recorded)
    assert response.status == 200, response.body
    (request,) = relay.worker.requests
    assert request.system and request.max_tokens == recorded["max_output_tokens"]
    roles = [(m.role, [b.type for b in m.content]) for m in request.messages]
    # litellm sends an assistant turn's function_call before its text: the text comes first
    assert roles == [("user", ["text", "text"]), ("assistant", ["text", "tool_use"]), ("user", ["tool_result", "text"])]
    assert events_of(response.body)[-1][0] == "response.completed"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [5]}, "input[0]"),
        ({"model": "m", "input": [{"type": "reasoning"}]}, "input"),
        ({"model": "m", "input": [{"type": "computer_call"}]}, "input[0].type"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
        ({"model": "m", "input": "x", "max_output_tokens": -1}, "max_output_tokens"),
        ({"model": "m", "input": "x", "instructions": 5}, "instructions"),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],
            },
            "input[0].content[0].image_url.url",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,!"}]}
                ],
            },
            "input[0].content[0].image_url.url",
        ),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "refusal"}]}]}, "input[0].content[0].type"),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]},
            "input[0].arguments",
        ),
        ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ],
)
async def test_bad_requests_are_openai_400s_naming_the_field(payload, param):
    async with in_process() as relay:  # no worker: validation comes first
        response = await relay.post(PATH, payload)
    assert response.status == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_stream_has_the_golden_event_sequence_for_a_tool_call():
    golden = [name for name, _ in events_of((GOLDEN / "responses_stream_tool.sse").read_bytes())]
    async with in_process(TEXT_THEN_TOOL) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "weather?", "tools": TOOLS, "stream": True})
    assert response.headers["content-type"] == "text/event-stream"
    ours = events_of(response.body)
    names = [n for n, _ in ours]
    assert [d["sequence_number"] for _, d in ours] == list(range(len(ours)))
    calls_only = [n for n in names if "output_text" not in n and "content_part" not in n]
    dedupe = lambda seq: [n for i, n in enumerate(seq) if i == 0 or seq[i - 1] != n]  # noqa: E731
    message_item = names.index("response.output_item.added")
    assert names[message_item + 1] == "response.content_part.added"
    assert dedupe(calls_only[:2] + calls_only[4:]) == dedupe(golden)
    completed = ours[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["total_tokens"] > 0
    assert [item["type"] for item in completed["output"]] == ["message", "function_call"]
    call = completed["output"][1]
    assert (call["call_id"], call["name"], call["arguments"]) == ("call_scripted_1", "get_weather", '{"city":"Paris"}')


async def test_text_item_then_output_text_done_carries_the_whole_text():
    async with in_process(text_answer("echo: hello")) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "hello", "stream": True})
    by_name = {n: d for n, d in events_of(response.body)}
    assert by_name["response.output_text.done"]["text"] == "echo: hello"
    assert by_name["response.output_item.done"]["item"]["content"][0]["text"] == "echo: hello"


async def test_the_token_limit_makes_an_incomplete_response():
    async with in_process(text_answer("cut", stop="maxTokens")) as relay:
        streamed = await relay.post(PATH, {"model": "m", "input": "x", "stream": True})
        whole = await relay.post(PATH, {"model": "m", "input": "x"})
    name, data = events_of(streamed.body)[-1]
    assert name == "response.incomplete" and data["response"]["status"] == "incomplete"
    assert whole.json()["status"] == "incomplete"
    assert whole.json()["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_failure_mid_stream_is_response_failed():
    script = [Start(id="-", model=MODEL), ErrorFrame(id="-", code="refused", message="User rejected sampling request")]
    async with in_process(script) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "REFUSE", "stream": True})
    name, data = events_of(response.body)[-1]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert data["response"]["error"] == {"code": "refused", "message": "User rejected sampling request"}


async def test_keep_alive_comments_flow_while_the_model_thinks():
    async with in_process([0.3, *text_answer("late")], keepalive_interval=0.05) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "x", "stream": True})
    assert response.writes[1] == b": keep-alive\n\n"
    assert events_of(response.body)[-1][0] == "response.completed"


# --- structured output ------------------------------------------------------------------------

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def test_text_format_travels_in_the_neutral_request_and_the_response_reports_it():
    fmt = {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
    body = {"input": "who?", "text": {"format": fmt}, "tools": [{"type": "function", "name": "f", "strict": True}]}
    call = parse_request(json.dumps(body).encode())
    wanted = call.request.output_format
    assert wanted is not None and (wanted.type, wanted.name, wanted.json_schema, wanted.strict) == (
        "json_schema",
        "person",
        PERSON,
        True,
    )
    answer = Answer(model="m", text=['{"name":"Ada"}'], stop_reason="endTurn")
    reported = response_json(call.request, answer, UsageEstimate(1, 1))
    assert reported["text"]["format"] == {**fmt, "description": None}
    assert reported["tools"][0]["strict"] is True
    as_object = parse_request(json.dumps({"input": "x", "text": {"format": {"type": "json_object"}}}).encode())
    assert response_json(as_object.request, answer, UsageEstimate(1, 1))["text"]["format"] == {"type": "json_object"}
    plain = parse_request(json.dumps({"input": "x", "text": {"verbosity": "low"}}).encode())
    assert plain.request.output_format is None


@pytest.mark.parametrize(
    ("text", "param"),
    [({"format": {"type": "json_schema", "name": "x"}}, "text.format"), ({"format": "json"}, "text.format")],
)
def test_a_text_format_that_cannot_be_honoured_is_a_400_naming_it(text, param):
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps({"input": "x", "text": text}).encode())
    assert error.value.param == param
