"""The chat-completions adapter without processes: request parsing and its 400s, the stream and the
completion JSON, routing errors and every error kind in OpenAI's shape.

Frames are checked against the golden frames recorded from real clients (tests/golden/, copied from
shared/reference/golden/) and against shared/reference/wire-contract.md. Where the whole request
flow matters, the app runs in-process on a real broker with a scripted worker (tests/_app_driver.py).
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from relay._collect import Answer
from relay._errors import TABLE, Kind, RelayError, error_headers
from relay._openai_chat import ChatAdapter, ChatStreamEncoder, completion, parse_request
from relay._usage import Usage
from shared_protocol import End, Start, TextDelta, ToolCall

from _app_driver import in_process
from _sse import data_of
from conftest import chat_body

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden"
PATH = "/v1/chat/completions"
MODEL = "mock-model"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def shape(value):
    """Keys (recursively) and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def sse_json(data: bytes) -> list:
    return data_of(data, only_data=True)


def text_answer(text: str, stop: str = "endTurn") -> list:
    return [Start(id="-", model=MODEL), TextDelta(id="-", text=text), End(id="-", stop_reason=stop)]


def error_of(response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --- stream encoder and completion JSON against the golden frames -------------------------------


def test_stream_frames_match_the_golden_text_stream():
    golden = sse_json((GOLDEN / "chat_stream_text.sse").read_bytes())
    encoder = ChatStreamEncoder(include_usage=True)
    answer = Answer(model="m")
    out = encoder.first(answer)
    events = [Start(id="r", model="mock-model"), *(TextDelta(id="r", text=p) for p in ("Hello", " world", "!"))]
    for event in events:
        answer.add(event)
        out += encoder.event(event, answer)
    answer.add(End(id="r", stop_reason="endTurn"))
    out += encoder.finish(answer, Usage(12, 7))
    ours = sse_json(out)
    assert ours[-1] == golden[-1] == "[DONE]"
    assert [shape(json.loads(e)) for e in ours[:-1]] == [shape(json.loads(e)) for e in golden[:-1]]
    assert [json.loads(e)["choices"] for e in ours[1:-1]] == [json.loads(e)["choices"] for e in golden[1:-1]]


def test_tool_call_delta_has_the_golden_first_delta_keys_and_whole_arguments():
    golden = [json.loads(e) for e in sse_json((GOLDEN / "chat_stream_text_then_2_tools.sse").read_bytes())[:-1]]
    golden_first_call = next(
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in golden
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    )
    encoder = ChatStreamEncoder(include_usage=False)
    tool_call = ToolCall(id="r", call_id="call_1", name="get_weather", arguments={"location": "Paris"})
    frame = encoder.event(tool_call, Answer(model="m", tool_calls=[tool_call]))
    (call,) = json.loads(sse_json(frame)[0])["choices"][0]["delta"]["tool_calls"]
    assert call.keys() == golden_first_call.keys()
    assert call["function"].keys() == golden_first_call["function"].keys()
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}


def test_non_stream_bodies_match_the_golden_shapes():
    text = Answer(model="mock-model", text=["Hello world!"], stop_reason="endTurn")
    golden_text = json.loads((GOLDEN / "chat_nonstream_text.json").read_text())
    assert shape(completion(text, Usage(12, 7))) == shape(golden_text)
    tool = Answer(
        model="mock-model",
        stop_reason="toolUse",
        tool_calls=[ToolCall(id="r", call_id="call_mock_0", name="get_weather", arguments={"location": "Paris"})],
    )
    golden_tool = json.loads((GOLDEN / "chat_nonstream_tool.json").read_text())
    ours = completion(tool, Usage(12, 7))
    assert shape(ours) == shape(golden_tool)
    assert ours["choices"][0]["finish_reason"] == "tool_calls"


def test_finish_reasons_map_from_mcp_stop_reasons():
    for stop, expected in [("endTurn", "stop"), ("stopSequence", "stop"), ("maxTokens", "length")]:
        body = completion(Answer(model="m", text=["x"], stop_reason=stop), Usage(1, 1))
        assert body["choices"][0]["finish_reason"] == expected


# --- requests -----------------------------------------------------------------------------------


def test_litellm_proxy_chat_request_is_accepted():
    """The body litellm's proxy sends for a Claude-Code-shaped request (wire contract section 4.2)."""
    body = {
        "model": "mock-model",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "You are Claude Code"}, {"type": "text", "text": "CLI"}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "List the files"},
                ],
            },
            {
                "role": "assistant",
                "content": "I'll list the files first.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command": "ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "README.md\nsrc"},
            {"role": "user", "content": [{"type": "text", "text": "continue"}]},
        ],
        "temperature": 1,
        "max_tokens": 32000,
        "top_k": 5,
        "prompt_cache_key": "abc",
        "reasoning_effort": "high",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "description": "run",
                    "parameters": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                        "additionalProperties": False,
                        "$schema": "http://json-schema.org/draft-07/schema#",
                    },
                },
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    call = parse_request(json.dumps(body).encode())
    request = call.request
    assert call.stream and call.include_usage
    assert request.system == "You are Claude Code\nCLI"
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert [b.type for b in request.messages[1].content] == ["text", "tool_use"]
    assert request.messages[1].content[1].input == {"command": "ls"}
    assert [b.type for b in request.messages[2].content] == ["tool_result", "text"]
    assert request.tools[0].input_schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"model": "m"}', "messages", "'messages' is required"),
        (b'{"messages": "hello"}', "messages", "non-empty list"),
        (b'{"messages": []}', "messages", "non-empty list"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "messages[0].role", "must be one of"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content", "string or a list"),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}',
            "messages[0].content[0].type",
            "not supported",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream", "boolean"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}', "max_tokens", "integer"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens", "positive"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature", "number"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stop": 5}', "stop", "a string or a list of strings"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', "n", "n=1"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}',
            "response_format.json_schema",
            "must be an object",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "logprobs": true}', "logprobs", "not available"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"]}',
            "modalities",
            "Only text",
        ),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}',
            "messages[0].content[0].image_url.url",
            "must be data:, https:// or http:// URLs",
        ),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,!!"}]}]}',
            "messages[0].content[0].image_url",
            "not valid base64",
        ),
        (b'{"messages": [{"role": "tool", "content": "x"}]}', "messages[0].tool_call_id", "tool_call_id"),
        (
            b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]}',
            "messages[1].tool_calls[0].function.arguments",
            "is not valid JSON",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]}',
            "messages[1].tool_calls[0].function.arguments",
            "must encode a JSON object",
        ),
        (
            b'{"messages": [{"role": "system", "content": "only a system prompt"}]}',
            "messages",
            "at least one",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "tools": {}}', "tools", "must be a list"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": 5}}]}',
            "tools[0].function.parameters",
            "JSON Schema object",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "nope"}}}',
            "tool_choice",
            "not in 'tools'",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}', "tool_choice", "auto, none"),
    ],
)
async def test_bad_request_is_a_400_naming_the_field(body, param, fragment):
    async with in_process() as relay:  # no worker: validation comes first
        response = await relay.post(PATH, body)
    assert response.status == 400, response.body
    assert response.headers["x-should-retry"] == "false"
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == ("invalid_json" if param is None else None)
    assert fragment in error["message"]


# --- answers through the app --------------------------------------------------------------------


async def test_non_stream_answer_carries_model_finish_reason_and_estimated_usage():
    async with in_process(text_answer("echo: hello there")) as relay:
        response = await relay.post(PATH, chat_body("hello there"))
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
    assert usage["completion_tokens"] == 4  # 3 chunks, a colon, 17 ASCII characters: 4.26
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert relay.worker.requests[0].model == "test-model"


async def test_stream_follows_the_wire_contract():
    body = chat_body("stream me", stream=True, stream_options={"include_usage": True})
    async with in_process(text_answer("echo: stream me")) as relay:
        response = await relay.post(PATH, body)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert "x-mcptb-usage" not in response.headers  # its head goes out before the worker says how it counted
    events = response.sse_events
    assert all(e.startswith("data: ") for e in events), events  # never event:/id:/retry:
    datas = data_of(response.body)
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
    # the finish chunk, the usage chunk and [DONE] go out in one write: nothing can come between them
    assert response.writes[-1].decode() == "".join(e + "\n\n" for e in events[-3:])


async def test_stream_without_include_usage_has_no_usage_chunk():
    async with in_process(text_answer("echo: hi")) as relay:
        response = await relay.post(PATH, chat_body("hi", stream=True))
    chunks = [json.loads(d) for d in data_of(response.body)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_text_that_arrived_together_goes_out_in_one_frame_not_one_per_character():
    script = [Start(id="-", model=MODEL), *[TextDelta(id="-", text="x")] * 1000, End(id="-", stop_reason="endTurn")]
    async with in_process(script) as relay:
        response = await relay.post(PATH, chat_body("LONG please", stream=True))
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in data_of(response.body)[1:-2]]
    assert contents == ["x" * 1000]


async def test_streamed_tool_call_sends_name_once_with_whole_arguments():
    script = [
        Start(id="-", model=MODEL),
        TextDelta(id="-", text="Let me check."),
        ToolCall(id="-", call_id="call_scripted_1", name="get_weather", arguments={"city": "Paris"}),
        End(id="-", stop_reason="toolUse"),
    ]
    body = chat_body("weather?", tools=TOOLS, stream=True, stream_options={"include_usage": True})
    async with in_process(script) as relay:
        response = await relay.post(PATH, body)
    chunks = [json.loads(d) for d in data_of(response.body)[:-1]]
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


# --- routing and the error table ----------------------------------------------------------------


async def test_unknown_path_is_404_listing_every_api_and_wrong_method_is_405():
    async with in_process() as relay:
        missing = await relay.call("GET", "/v2/nothing")
        wrong = await relay.call("GET", PATH)
        below_an_api = await relay.call("POST", "/v1/responses/abc")
    assert missing.status == 404 and error_of(missing)["code"] == "unknown_url"
    assert error_of(missing)["message"] == (
        "Unknown path GET /v2/nothing. This relay serves /v1/chat/completions, /v1/responses, "
        "/v1/responses/input_tokens, /v1/messages, /v1/messages/count_tokens, /v1/models, /health and /metrics."
    )
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"
    assert error_of(wrong)["code"] == "method_not_allowed" and wrong.headers["x-should-retry"] == "false"
    assert below_an_api.status == 404 and error_of(below_an_api)["type"] == "not_found_error"


# kind: (HTTP status, OpenAI error type, code, retryable) - what callers see (docs/apis.md#errors-and-retries)
OPENAI_ERRORS: dict[str, tuple[int, str, str | None, bool]] = {
    "bad_request": (400, "invalid_request_error", None, False),
    "invalid_json": (400, "invalid_request_error", "invalid_json", False),
    "forbidden_origin": (403, "permission_error", "forbidden_origin", False),
    "forbidden_host": (403, "permission_error", "forbidden_host", False),
    "invalid_api_key": (401, "authentication_error", "invalid_api_key", False),
    "unknown_path": (404, "not_found_error", "unknown_url", False),
    "unknown_model": (404, "invalid_request_error", "model_not_found", False),
    "websocket_unsupported": (426, "invalid_request_error", "websocket_unsupported", False),
    "method_not_allowed": (405, "invalid_request_error", "method_not_allowed", False),
    "tools_unsupported": (400, "invalid_request_error", "tools_unsupported", False),
    "queue_full": (429, "rate_limit_error", "queue_full", True),
    "no_worker": (503, "service_unavailable", "no_worker", False),
    "no_agent": (503, "service_unavailable", "no_agent", False),
    "waiting_for_itself": (503, "service_unavailable", "waiting_for_itself", False),
    "worker_lost": (502, "upstream_error", "worker_lost", False),
    "queue_timeout": (504, "timeout", "timeout", False),
    "answer_timeout": (504, "timeout", "timeout", False),
    "answer_cut": (502, "upstream_error", None, False),
    "timeout": (504, "timeout", "timeout", False),
    "refused": (422, "permission_error", "refused", False),
    "protocol_violation": (502, "upstream_error", "protocol_violation", False),
    "relay_stopping": (503, "service_unavailable", "relay_stopping", True),
    "unsupported": (400, "invalid_request_error", "unsupported", False),
    "client_error": (424, "upstream_error", "client_error", False),
    "cancelled": (424, "upstream_error", "cancelled", False),
    "invalid_answer": (422, "upstream_error", "invalid_answer", False),
    "bad_frame": (502, "upstream_error", "bad_frame", False),
    "internal": (500, "server_error", "internal", True),
    "bad_http": (400, "invalid_request_error", None, False),
    "unsupported_http": (501, "server_error", None, False),
    "read_timeout": (408, "timeout", None, False),
    "body_too_large": (413, "invalid_request_error", None, False),
    "head_too_large": (431, "invalid_request_error", None, False),
    "too_many_connections": (503, "service_unavailable", None, True),
    "body_memory_full": (503, "service_unavailable", None, True),
    "relay_bug": (500, "server_error", None, True),
}


def test_every_error_kind_has_one_row_in_the_table():
    kinds = {kind for part in typing.get_args(Kind) for kind in typing.get_args(part)}
    assert kinds == set(TABLE) == set(OPENAI_ERRORS)


@pytest.mark.parametrize("kind", sorted(OPENAI_ERRORS))
def test_each_error_kind_in_openai_shape(kind):
    status, error_type, code, retryable = OPENAI_ERRORS[kind]
    error = RelayError(kind, "what happened", param="p")
    assert error.shape.status == status
    assert ChatAdapter().error_json(error) == {
        "error": {"message": "what happened", "type": error_type, "param": "p", "code": code}
    }
    upgrade = [("upgrade", "HTTP/1.1")] if status == 426 else []  # a 426 names the protocol to use
    assert error_headers(error) == [("x-should-retry", "true" if retryable else "false"), *upgrade]
    assert ("retry-after", "1") in error_headers(RelayError(kind, "m", retry_after=1))


# --- structured output ------------------------------------------------------------------------

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def test_response_format_travels_in_the_neutral_request():
    body = {"messages": [{"role": "user", "content": "x"}]}
    schema_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    wanted = parse_request(json.dumps({**body, "response_format": schema_format}).encode()).request.output_format
    assert wanted is not None and (wanted.type, wanted.name, wanted.json_schema, wanted.strict) == (
        "json_schema",
        "person",
        PERSON,
        True,
    )
    as_object = parse_request(json.dumps({**body, "response_format": {"type": "json_object"}}).encode())
    assert as_object.request.output_format is not None and as_object.request.output_format.type == "json_object"
    plain = parse_request(json.dumps({**body, "response_format": {"type": "text"}}).encode())
    assert plain.request.output_format is None
    strict_tool = {"type": "function", "function": {"name": "f", "parameters": PERSON, "strict": True}}
    assert parse_request(json.dumps({**body, "tools": [strict_tool]}).encode()).request.tools[0].strict


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema"),
        ({"type": "yaml"}, "response_format.type"),
        ("json", "response_format"),
    ],
)
def test_a_response_format_that_cannot_be_honoured_is_a_400_naming_it(response_format, param):
    body = {"messages": [{"role": "user", "content": "x"}], "response_format": response_format}
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps(body).encode())
    assert error.value.kind == "bad_request" and error.value.param == param
