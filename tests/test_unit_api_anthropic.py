"""The Anthropic messages adapter without processes: Claude Code's request shape and the 400s, the
stream and the message JSON against the golden frames (tests/golden/, copied from
shared/reference/golden/), count_tokens, and every error in Anthropic's shape. The app runs
in-process on a real broker with a scripted worker (tests/_app_driver.py)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from relay._anthropic import MessagesAdapter, parse_request
from relay._anthropic_answer import message_json
from relay._api import error_page
from relay._collect import Answer
from relay._errors import TABLE, RelayError
from relay._usage import Usage
from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from _app_driver import in_process
from _sse import named_events

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).parent / "golden"
PATH = "/v1/messages"
MODEL = "mock-model"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
TEXT_THEN_TOOL = [
    Start(id="-", model=MODEL),
    TextDelta(id="-", text="Let me check."),
    ToolCall(id="-", call_id="call_scripted_1", name="get_weather", arguments={"city": "Paris"}),
    End(id="-", stop_reason="toolUse"),
]


def body(text: str = "hello", **extra) -> dict:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


def events_of(data: bytes) -> list[tuple[str, dict]]:
    return named_events(data, comments=False)


def error_of(response) -> dict:
    data = response.json()
    assert data["type"] == "error" and set(data["error"]) == {"type", "message"}
    return data["error"]


# --- requests -----------------------------------------------------------------------------------


async def test_claude_code_shaped_request_is_accepted():
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
    async with in_process(TEXT_THEN_TOOL) as relay:
        response = await relay.call("POST", PATH, json.dumps(recorded).encode(), headers, query="beta=true")
    assert response.status == 200, response.body
    (request,) = relay.worker.requests
    assert request.system.startswith("x-anthropic-billing-header") and "You are Claude Code" in request.system
    assert request.max_tokens == 64000 and request.stop_sequences == ["STOP"] and request.top_p == 0.9
    assert request.tool_choice.mode == "required"
    assert "web_search" not in {t.name for t in request.tools}
    first_user = [b.text for b in request.messages[0].content]
    assert "List the files here" in first_user and any(
        t.startswith("System note: Mid-conversation") for t in first_user
    )
    assert [b.type for b in request.messages[1].content] == ["text"]  # the thinking block was dropped
    assert events_of(response.body)[-1][0] == "message_stop"


def test_tool_result_turn_keeps_the_tool_use_ids():
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
    request = parse_request(json.dumps(body(messages=messages, tools=TOOLS)).encode()).request
    assert [b.type for b in request.messages[1].content] == ["text", "tool_use"]
    result, text = request.messages[2].content
    assert result.tool_use_id == "call_scripted_1" and result.content[0].text == "sunny"
    assert text.text == "and tomorrow?"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{oops", "not valid JSON"),
        (b'{"model": "m", "max_tokens": 5}', "messages: Field required"),
        (b'{"model": "m", "messages": []}', "messages: must be a non-empty list"),
        (b'{"model": "m", "messages": [5]}', "messages.0: must be an object"),
        (b'{"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}', "positive integer"),
        (b'{"model": "m", "system": 5, "messages": [{"role": "user", "content": "x"}]}', "system: must be a string"),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": ""}]}', "at least one message with content"),
        (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "document"}]}]}', "document"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "ftp://x"}}]}]}',
            "messages.0.content.0.source.url: must be an https:// or http:// URL",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}',
            "image sources are base64 or url",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!"}}]}]}',
            "messages.0.content.0.source.data: not valid base64",
        ),
        (
            b'{"model": "m", "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": 5}]}]}',
            "messages.0.content.0.input: must be an object",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}',
            "tool_use_id: required",
        ),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop_sequences": "x"}', "stop_sequences"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}', "tools.0.name: required"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool", "name": "nope"}}',
            "tool_choice",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "some"}}',
            "auto, any",
        ),
    ],
)
async def test_bad_requests_are_anthropic_400s(payload, fragment):
    async with in_process() as relay:  # no worker: validation comes first
        response = await relay.post(PATH, payload)
    assert response.status == 400
    assert response.headers["x-should-retry"] == "false"
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]


async def test_count_tokens_estimates():
    async with in_process() as relay:
        response = await relay.post("/v1/messages/count_tokens", body("x" * 400))
        bad = await relay.post("/v1/messages/count_tokens", b"{")
    assert response.status == 200 and response.json() == {"input_tokens": 33}  # one chunk, 400 ASCII characters
    assert response.headers["x-mcptb-usage"] == "estimated"
    assert bad.status == 400 and error_of(bad)["type"] == "invalid_request_error"


# --- answers ------------------------------------------------------------------------------------


async def test_stream_frames_have_the_golden_sequence():
    golden = events_of((GOLDEN / "anthropic_stream_text_then_tool.sse").read_bytes())
    async with in_process(TEXT_THEN_TOOL) as relay:
        response = await relay.post(PATH, body("weather?", stream=True, tools=TOOLS))
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


def test_message_has_the_golden_shape():
    golden = json.loads((GOLDEN / "anthropic_nonstream.json").read_text())
    answer = Answer(model=MODEL, text=["Hello world!"], stop_reason="toolUse")
    answer.tool_calls.append(ToolCall(id="r", call_id="toolu_1", name="get_weather", arguments={"location": "Paris"}))
    ours = message_json(answer, Usage(25, 15))
    assert list(ours) == list(golden)
    assert {k: v for k, v in ours.items() if k != "id"} == {k: v for k, v in golden.items() if k != "id"} | {
        "content": [golden["content"][0], {**golden["content"][1], "id": "toolu_1"}]
    }
    assert ours["id"].startswith("msg_")


async def test_non_stream_answer_is_a_message():
    async with in_process(TEXT_THEN_TOOL) as relay:
        response = await relay.post(PATH, body("weather?", tools=TOOLS))
    assert response.status == 200 and response.headers["x-mcptb-usage"] == "estimated"
    data = response.json()
    assert data["model"] == MODEL and data["stop_reason"] == "tool_use"
    assert data["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_scripted_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]


# --- errors -------------------------------------------------------------------------------------


async def test_routing_and_access_errors_use_anthropic_shape():
    async with in_process(worker_grace=0) as relay:
        unknown = await relay.post("/v1/messages/batches", body())
        wrong_method = await relay.call("GET", PATH)
        foreign = await relay.post(PATH, body(), headers={"origin": "https://evil.example"})
        no_worker = await relay.post(PATH, body())
    assert unknown.status == 404 and error_of(unknown)["type"] == "not_found_error"
    assert wrong_method.status == 405 and error_of(wrong_method)["type"] == "invalid_request_error"
    assert foreign.status == 403 and error_of(foreign)["type"] == "permission_error"
    assert no_worker.status == 503 and error_of(no_worker)["type"] == "overloaded_error"
    assert "claude mcp add" in error_of(no_worker)["message"]
    async with in_process(api_key="k") as relay:
        unauthorized = await relay.post(PATH, body())
    assert unauthorized.status == 401 and error_of(unauthorized)["type"] == "authentication_error"
    too_big = json.loads(error_page(RelayError("body_too_large", "too big"), "/v1/messages/count_tokens"))
    assert too_big == {"type": "error", "error": {"type": "request_too_large", "message": "too big"}}


async def test_worker_faults_use_anthropic_shape():
    refused = [ErrorFrame(id="-", code="refused", message="User rejected sampling request")]
    async with in_process(refused) as relay:
        whole = await relay.post(PATH, body("REFUSE"))
    assert whole.status == 422
    assert error_of(whole) == {"type": "permission_error", "message": "User rejected sampling request"}
    timed_out = [Start(id="-", model=MODEL), ErrorFrame(id="-", code="timeout", message="--sampling-timeout passed")]
    async with in_process(timed_out) as relay:
        whole = await relay.post(PATH, body("SLOW"))
        streamed = await relay.post(PATH, body("SLOW", stream=True))
    assert whole.status == 504 and error_of(whole)["type"] == "api_error"
    assert events_of(streamed.body)[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "--sampling-timeout passed"}},
    )


async def test_queue_full_is_an_anthropic_429_with_retry_after():
    async with in_process([], slots=0, max_queue=1) as relay, anyio.create_task_group() as tg:
        tg.start_soon(relay.post, PATH, body("first", stream=True))
        with anyio.fail_after(5):
            while not relay.broker.queue:
                await anyio.sleep(0.01)
        full = await relay.post(PATH, body("second"))
        tg.cancel_scope.cancel()
    assert full.status == 429 and full.headers["retry-after"] == "1" and full.headers["x-should-retry"] == "true"
    assert full.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": full.json()["error"]["message"]},
    }


# kind: Anthropic error type - what callers have always seen (the statuses: test_unit_api_chat.py)
ANTHROPIC_ERRORS = {
    "bad_request": "invalid_request_error",
    "invalid_json": "invalid_request_error",
    "forbidden_origin": "permission_error",
    "forbidden_host": "permission_error",
    "invalid_api_key": "authentication_error",
    "unknown_path": "not_found_error",
    "unknown_model": "not_found_error",
    "websocket_unsupported": "invalid_request_error",
    "method_not_allowed": "invalid_request_error",
    "tools_unsupported": "invalid_request_error",
    "queue_full": "rate_limit_error",
    "no_worker": "overloaded_error",
    "no_agent": "overloaded_error",
    "waiting_for_itself": "overloaded_error",
    "worker_lost": "api_error",
    "queue_timeout": "api_error",
    "answer_timeout": "api_error",
    "answer_cut": "api_error",
    "timeout": "api_error",
    "refused": "permission_error",
    "protocol_violation": "api_error",
    "relay_stopping": "overloaded_error",
    "unsupported": "invalid_request_error",
    "client_error": "api_error",
    "cancelled": "api_error",
    "invalid_answer": "api_error",
    "bad_frame": "api_error",
    "internal": "api_error",
    "bad_http": "invalid_request_error",
    "unsupported_http": "api_error",
    "read_timeout": "invalid_request_error",
    "body_too_large": "request_too_large",
    "head_too_large": "invalid_request_error",
    "too_many_connections": "overloaded_error",
    "body_memory_full": "overloaded_error",
    "relay_bug": "api_error",
}


def test_every_error_kind_has_an_anthropic_type():
    assert set(ANTHROPIC_ERRORS) == set(TABLE)


@pytest.mark.parametrize("kind", sorted(ANTHROPIC_ERRORS))
def test_each_error_kind_in_anthropic_shape(kind):
    error = RelayError(kind, "what happened", param="p")
    assert MessagesAdapter().error_json(error) == {
        "type": "error",
        "error": {"type": ANTHROPIC_ERRORS[kind], "message": "what happened"},
    }


# --- structured output ------------------------------------------------------------------------

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize(
    "placement",
    [
        {"output_config": {"format": {"type": "json_schema", "schema": PERSON}, "effort": "high"}},
        {"output_format": {"type": "json_schema", "schema": PERSON}},
    ],
)
def test_output_format_travels_in_the_neutral_request(placement):
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "who?"}], **placement}
    wanted = parse_request(json.dumps(body).encode()).request.output_format
    assert wanted is not None and (wanted.type, wanted.json_schema) == ("json_schema", PERSON)


def test_output_config_without_a_format_is_plain_text_and_a_bad_format_a_400():
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "output_config": {"effort": "low"}}
    assert parse_request(json.dumps(body).encode()).request.output_format is None
    body["output_config"] = {"format": {"type": "json_schema"}}
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps(body).encode())
    assert error.value.param == "output_config.format"


# --- server tools -----------------------------------------------------------------------------

SERVER_TOOLS = [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    {"type": "web_fetch_20250910", "name": "web_fetch"},
]


def test_server_tools_are_accepted_left_out_and_named():
    call = parse_request(json.dumps(body(tools=[*TOOLS, *SERVER_TOOLS])).encode())
    assert call.ignored_tools == ("web_search", "web_fetch")
    assert [t.name for t in call.request.tools] == ["get_weather"]
    assert parse_request(json.dumps(body(tools=TOOLS)).encode()).ignored_tools == ()


async def test_server_tools_are_named_in_a_header_of_stream_whole_and_count_tokens_answers():
    payload = body(tools=[*TOOLS, *SERVER_TOOLS])
    async with in_process(TEXT_THEN_TOOL) as relay:
        whole = await relay.post(PATH, payload)
        streamed = await relay.post(PATH, {**payload, "stream": True})
        counted = await relay.post(PATH + "/count_tokens", payload)
        plain = await relay.post(PATH, body(tools=TOOLS))
    for response in (whole, streamed, counted):
        assert response.status == 200, response.body
        assert response.headers["x-mcptb-ignored-tools"] == "web_search,web_fetch"
    assert "x-mcptb-ignored-tools" not in plain.headers


# --- message threads (thread: create / continue) ----------------------------------------------

THREADS_BETA = {"anthropic-beta": "message-threads-2026-08-12"}


def tool_result_turn(tool_use_id: str = "call_scripted_1") -> list[dict]:
    """What the SDKs' tool runners send on a thread's second turn: the tool result alone."""
    return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "sunny"}]}]


def cont(previous_id: str) -> dict:
    return {"type": "continue", "previous_message_id": previous_id}


def roles_of(request) -> list[tuple[str, list[str]]]:
    return [(m.role, [b.type for b in m.content]) for m in request.messages]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_thread_continues_with_only_the_new_messages(stream):
    first = body("weather?", system="Be brief.", tools=TOOLS, thread={"type": "create"}, stream=stream)
    async with in_process(TEXT_THEN_TOOL) as relay:
        one = await relay.post(PATH, first, headers=THREADS_BETA)
        message_id = events_of(one.body)[0][1]["message"]["id"] if stream else one.json()["id"]
        second = {"model": "claude-x", "max_tokens": 100, "messages": tool_result_turn(), "thread": cont(message_id)}
        two = await relay.post(PATH, second, headers=THREADS_BETA)
    assert two.status == 200, two.body
    later = relay.worker.requests[1]
    assert roles_of(later) == [("user", ["text"]), ("assistant", ["text", "tool_use"]), ("user", ["tool_result"])]
    assert later.messages[1].content[1].id == later.messages[2].content[0].tool_use_id == "call_scripted_1"
    assert later.system == "Be brief." and [t.name for t in later.tools] == ["get_weather"]  # the thread's own
    # and the answer to a continue continues the thread in turn
    async with in_process(TEXT_THEN_TOOL) as relay:
        ids = []
        for _ in range(3):
            thread = cont(ids[-1]) if ids else {"type": "create"}
            msgs = tool_result_turn() if ids else [{"role": "user", "content": "weather?"}]
            extra = {} if ids else {"tools": TOOLS}
            response = await relay.post(PATH, body(messages=msgs, thread=thread, **extra))
            assert response.status == 200, response.body
            ids.append(response.json()["id"])
    assert len(relay.worker.requests[-1].messages) == 5 and len(set(ids)) == 3


def thread_error(response) -> dict:
    data = response.json()
    assert data["type"] == "error" and set(data["error"]) == {"type", "message", "details"}
    return data["error"]


async def test_an_unknown_thread_is_the_apis_404_thread_not_found():
    async with in_process(TEXT_THEN_TOOL) as relay:
        unknown = await relay.post(PATH, body(messages=tool_result_turn(), thread=cont("msg_nope")))
        unthreaded = (await relay.post(PATH, body("weather?", tools=TOOLS))).json()  # no thread: not stored
        not_stored = await relay.post(PATH, body(messages=tool_result_turn(), thread=cont(unthreaded["id"])))
    for response in (unknown, not_stored):
        assert response.status == 404 and response.headers["x-should-retry"] == "false"
        error = thread_error(response)
        assert error["type"] == "not_found_error" and error["details"] == {"error_code": "thread_not_found"}
    assert "msg_nope" in thread_error(unknown)["message"] and len(relay.worker.requests) == 1


async def test_an_evicted_thread_is_not_found():
    async with in_process(TEXT_THEN_TOOL, store_conversations=1) as relay:
        one = (await relay.post(PATH, body("a", tools=TOOLS, thread={"type": "create"}))).json()
        await relay.post(PATH, body("b", tools=TOOLS, thread={"type": "create"}))
        gone = await relay.post(PATH, body(messages=tool_result_turn(), thread=cont(one["id"])))
    assert gone.status == 404 and thread_error(gone)["details"] == {"error_code": "thread_not_found"}


async def test_with_the_store_off_a_thread_is_thread_unsupported_request():
    async with in_process(TEXT_THEN_TOOL, store_conversations=0) as relay:
        created = await relay.post(PATH, body("weather?", thread={"type": "create"}))
        continued = await relay.post(PATH, body(messages=tool_result_turn(), thread=cont("msg_1")))
        plain = await relay.post(PATH, body("weather?"))
    for response in (created, continued):
        assert response.status == 400
        error = thread_error(response)
        assert error["type"] == "invalid_request_error"
        assert error["details"] == {"error_code": "thread_unsupported_request"}
        assert "--store-conversations 0" in error["message"]
    assert plain.status == 200 and relay.worker.requests and len(relay.worker.requests) == 1


async def test_a_continue_may_repeat_the_threads_system_and_tools_but_not_change_them():
    async with in_process(TEXT_THEN_TOOL) as relay:
        one = await relay.post(PATH, body("weather?", system="Be brief.", tools=TOOLS, thread={"type": "create"}))
        thread = cont(one.json()["id"])
        same = await relay.post(PATH, body(messages=tool_result_turn(), system="Be brief.", tools=TOOLS, thread=thread))
        other = await relay.post(PATH, body(messages=tool_result_turn(), system="Be long.", thread=thread))
    assert same.status == 200, same.body
    assert other.status == 400
    error = thread_error(other)
    assert error["details"] == {"error_code": "thread_fingerprint_mismatch"} and error["message"].startswith("system")


@pytest.mark.parametrize(
    ("thread", "param"),
    [("create", "thread"), ({"type": "fork"}, "thread"), ({"type": "continue"}, "thread.previous_message_id")],
)
def test_a_malformed_thread_is_a_400_naming_it(thread, param):
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps(body(thread=thread)).encode())
    assert error.value.param == param and error.value.kind == "bad_request"


async def test_a_thread_continued_past_the_body_limit_is_a_413():
    async with in_process(TEXT_THEN_TOOL, max_body_bytes=800) as relay:
        one = (await relay.post(PATH, body("x" * 100, tools=TOOLS, thread={"type": "create"}))).json()
        small = await relay.post(PATH, body(messages=tool_result_turn(), thread=cont(one["id"])))
        big = await relay.post(PATH, body("y" * 300, thread=cont(one["id"])))
    assert small.status == 200, small.body
    assert big.status == 413 and big.json()["error"]["type"] == "request_too_large"
