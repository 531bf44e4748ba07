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
from relay._responder import ClientGone
from relay._responses import parse_request
from relay._responses_answer import response_json
from relay._usage import Usage
from shared_protocol import End, ErrorFrame, Start, TextDelta, ToolCall

from _app_driver import FakeResponder, in_process
from _sse import named_events

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
    return named_events(data)


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
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}],
            },
            "input[0].content[0].image_url",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,!"}]}
                ],
            },
            "input[0].content[0].image_url",
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


async def test_failure_mid_stream_is_an_error_event_then_response_failed():
    """As OpenAI ends a failed stream: an ``error`` event with an ``error`` object (which the openai SDKs
    raise), then ``response.failed`` whose code is one the openai types allow."""
    script = [Start(id="-", model=MODEL), ErrorFrame(id="-", code="refused", message="User rejected sampling request")]
    async with in_process(script) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "REFUSE", "stream": True})
    (error_name, error), (name, data) = events_of(response.body)[-2:]
    assert error_name == "error" and error["error"]["code"] == "refused"
    assert error["error"]["message"] == "User rejected sampling request"
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert data["response"]["error"] == {"code": "invalid_prompt", "message": "User rejected sampling request"}
    assert data["sequence_number"] == error["sequence_number"] + 1


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
    reported = response_json(call.request, answer, Usage(1, 1))
    assert reported["text"]["format"] == {**fmt, "description": None}
    assert reported["tools"][0]["strict"] is True
    as_object = parse_request(json.dumps({"input": "x", "text": {"format": {"type": "json_object"}}}).encode())
    assert response_json(as_object.request, answer, Usage(1, 1))["text"]["format"] == {"type": "json_object"}
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


# --- namespaced tools (the Codex CLI) ---------------------------------------------------------

CLOSE_AGENT = {
    "type": "function",
    "name": "close_agent",
    "description": "Close an agent.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"target": {"type": "string"}},
        "required": ["target"],
        "additionalProperties": False,
    },
}
# what Codex 0.171 sends: top-level functions, namespaces of functions (its sub-agent tools, each MCP
# server's tools as mcp__<server>), and its hosted web search
CODEX_TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run a command.", "strict": False, "parameters": {}},
    {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Tools for spawning and managing sub-agents.",
        "tools": [CLOSE_AGENT],
    },
    {
        "type": "namespace",
        "name": "mcp__files",
        "description": "An MCP server.",
        "tools": [{**CLOSE_AGENT, "name": "_read"}],
    },
    {"type": "web_search", "external_web_access": False},
]


def codex_body(**extra) -> dict:
    return {"model": "m", "input": "close it", "tools": CODEX_TOOLS, **extra}


def test_a_namespaces_function_tools_reach_the_model_under_unique_flat_names():
    call = parse_request(json.dumps(codex_body()).encode())
    tools = {t.name: t for t in call.request.tools}
    # Codex's own flat form, <namespace>__<name>, with stray underscores around the delimiter trimmed
    assert list(tools) == ["exec_command", "multi_agent_v1__close_agent", "mcp__files__read"]
    assert tools["multi_agent_v1__close_agent"].input_schema == CLOSE_AGENT["parameters"]
    assert tools["multi_agent_v1__close_agent"].description == "Close an agent."


def namespaced_call(name: str = "multi_agent_v1__close_agent") -> list:
    return [
        Start(id="-", model=MODEL),
        ToolCall(id="-", call_id="call_1", name=name, arguments={"target": "agent-7"}),
        End(id="-", stop_reason="toolUse"),
    ]


async def test_a_namespaced_call_goes_back_as_name_and_namespace_in_stream_and_whole_responses():
    async with in_process(namespaced_call()) as relay:
        whole = await relay.post(PATH, codex_body())
        streamed = await relay.post(PATH, codex_body(stream=True))
    # Codex runs {"name": "close_agent", "namespace": "multi_agent_v1"}; the flat name would be an
    # "unsupported call" to it
    expected = {"name": "close_agent", "namespace": "multi_agent_v1", "call_id": "call_1"}
    (item,) = whole.json()["output"]
    assert item["type"] == "function_call" and {k: item[k] for k in expected} == expected
    events = events_of(streamed.body)
    items = [d["item"] for n, d in events if n in ("response.output_item.added", "response.output_item.done")]
    assert len(items) == 2 and all({k: i[k] for k in expected} == expected for i in items)
    (completed,) = [d["response"] for n, d in events if n == "response.completed"]
    assert {k: completed["output"][0][k] for k in expected} == expected


async def test_a_plain_functions_call_has_no_namespace():
    async with in_process(namespaced_call("exec_command")) as relay:
        whole = await relay.post(PATH, codex_body())
    (item,) = whole.json()["output"]
    assert item["name"] == "exec_command" and "namespace" not in item


async def test_the_response_reports_the_tools_in_the_callers_shape():
    async with in_process(text_answer("ok")) as relay:
        whole = await relay.post(PATH, codex_body())
    reported = whole.json()["tools"]
    assert [(t["type"], t["name"]) for t in reported] == [
        ("function", "exec_command"),
        ("namespace", "multi_agent_v1"),
        ("namespace", "mcp__files"),
    ]
    assert reported[1]["tools"][0] == CLOSE_AGENT and reported[1]["description"] == CODEX_TOOLS[1]["description"]


def test_a_namespaced_call_sent_back_by_codex_is_read_as_the_flat_name():
    call_item = {
        "type": "function_call",
        "name": "close_agent",
        "namespace": "multi_agent_v1",
        "arguments": '{"target":"agent-7"}',
        "call_id": "call_1",
    }
    output = {"type": "function_call_output", "call_id": "call_1", "output": "closed"}
    body = codex_body(input=[{"role": "user", "content": "close it"}, call_item, output])
    request = parse_request(json.dumps(body).encode()).request
    (use,) = [b for m in request.messages for b in m.content if b.type == "tool_use"]
    assert (use.name, use.id, use.input) == ("multi_agent_v1__close_agent", "call_1", {"target": "agent-7"})
    assert use.name in {t.name for t in request.tools}


def test_tool_choice_can_name_a_namespaced_function():
    choice = {"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"}
    request = parse_request(json.dumps(codex_body(tool_choice=choice)).encode()).request
    assert request.tool_choice is not None
    assert (request.tool_choice.mode, request.tool_choice.name) == ("required", "multi_agent_v1__close_agent")


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "namespace", "tools": []}], "tools[0].name"),
        ([{"type": "namespace", "name": "ns", "tools": {}}], "tools[0].tools"),
        ([{"type": "namespace", "name": "ns", "tools": [{"type": "function"}]}], "tools[0].tools[0].name"),
        (
            [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f", "parameters": 1}]}],
            "tools[0].tools[0].parameters",
        ),
        # two tools the model would know by one name: which one a call meant could not be told
        (
            [
                {"type": "function", "name": "ns__f"},
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
            ],
            "tools[1].tools[0]",
        ),
        ([{"type": "function", "name": "f"}, {"type": "function", "name": "f"}], "tools[1]"),
    ],
)
def test_namespaces_that_cannot_be_flattened_are_400s_naming_the_field(tools, param):
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps({"input": "x", "tools": tools}).encode())
    assert error.value.param == param


# --- hosted tools -----------------------------------------------------------------------------


def test_hosted_tools_are_accepted_left_out_and_named():
    tools = [
        *CODEX_TOOLS,
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        {"type": "namespace", "name": "functions", "tools": [{"type": "custom", "name": "exec"}]},
    ]
    call = parse_request(json.dumps(codex_body(tools=tools)).encode())
    assert call.ignored_tools == ("web_search", "file_search", "apply_patch", "functions__exec")
    assert not {"web_search", "file_search", "apply_patch", "functions__exec"} & {t.name for t in call.request.tools}


async def test_hosted_tools_are_named_in_a_header_of_stream_and_whole_responses():
    async with in_process(text_answer("ok")) as relay:
        whole = await relay.post(PATH, codex_body())
        streamed = await relay.post(PATH, codex_body(stream=True))
        plain = await relay.post(PATH, {"model": "m", "input": "x", "tools": TOOLS})
    assert whole.headers["x-mcptb-ignored-tools"] == "web_search"
    assert streamed.headers["x-mcptb-ignored-tools"] == "web_search"
    assert "x-mcptb-ignored-tools" not in plain.headers
    # the response does not claim a tool it did not offer the model
    assert "web_search" not in {t["type"] for t in whole.json()["tools"]}


# --- continuations: previous_response_id and store ---------------------------------------------


def roles_of(request) -> list[tuple[str, list[str]]]:
    return [(m.role, [b.type for b in m.content]) for m in request.messages]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_that_never_reached_its_caller_is_not_stored(stream):
    """Stored just before the answer's end is written (a caller holding the end may continue at once),
    and forgotten when that write fails: a storm of callers hanging up fills the store with nothing."""
    body = {"model": "m", "input": "hi", "stream": stream}
    async with in_process(text_answer("lost")) as relay:
        with pytest.raises(ClientGone):
            await relay.post(PATH, body, responder=FakeResponder(gone_at=b"completed"))
        assert len(relay.app.store) == 0
        delivered = await relay.post(PATH, body)
        assert delivered.status == 200 and len(relay.app.store) == 1


async def test_previous_response_id_continues_the_stored_conversation_without_its_instructions():
    first = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "hi"}],
    }
    async with in_process(text_answer("echo: hi")) as relay:
        one = (await relay.post(PATH, first)).json()
        two = await relay.post(PATH, {"model": "m", "input": "and then?", "previous_response_id": one["id"]})
    assert one["store"] is True and one["previous_response_id"] is None
    assert two.status == 200, two.body
    assert two.json()["previous_response_id"] == one["id"] and two.json()["id"] != one["id"]
    earlier, later = relay.worker.requests
    assert earlier.system == "Be brief.\n\nAnswer in French."
    assert later.system == "Answer in French."  # input items are carried over, instructions are not
    assert [[b.text for b in m.content] for m in later.messages] == [["hi"], ["echo: hi"], ["and then?"]]


async def test_a_function_call_output_continuation_pairs_with_the_stored_call():
    async with in_process(TEXT_THEN_TOOL) as relay:
        one = (await relay.post(PATH, {"model": "m", "input": "weather?", "tools": TOOLS})).json()
        output = {"type": "function_call_output", "call_id": "call_scripted_1", "output": "sunny"}
        two = await relay.post(
            PATH, {"model": "m", "input": [output], "tools": TOOLS, "previous_response_id": one["id"]}
        )
    assert two.status == 200, two.body
    later = relay.worker.requests[1]
    assert roles_of(later) == [("user", ["text"]), ("assistant", ["text", "tool_use"]), ("user", ["tool_result"])]
    assert later.messages[1].content[1].id == later.messages[2].content[0].tool_use_id == "call_scripted_1"
    assert [t.name for t in later.tools] == ["get_weather"]


async def test_a_streamed_response_is_stored_under_the_id_its_events_carry():
    async with in_process(TEXT_THEN_TOOL) as relay:
        streamed = await relay.post(PATH, {"model": "m", "input": "weather?", "tools": TOOLS, "stream": True})
        events = events_of(streamed.body)
        response_id = events[0][1]["response"]["id"]
        assert {d["response"]["id"] for n, d in events if "response" in d} == {response_id}
        output = {"type": "function_call_output", "call_id": "call_scripted_1", "output": "sunny"}
        two = await relay.post(PATH, {"model": "m", "input": [output], "previous_response_id": response_id})
    assert two.status == 200, two.body
    assert roles_of(relay.worker.requests[1])[1] == ("assistant", ["text", "tool_use"])


async def test_a_chain_of_continuations_carries_every_turn():
    async with in_process(text_answer("ok")) as relay:
        previous = None
        for text in ("one", "two", "three"):
            body = {"model": "m", "input": text, **({"previous_response_id": previous} if previous else {})}
            previous = (await relay.post(PATH, body)).json()["id"]
    texts = [[b.text for b in m.content] for m in relay.worker.requests[-1].messages]
    assert texts == [["one"], ["ok"], ["two"], ["ok"], ["three"]]


def not_found(response_id: str) -> dict:
    """OpenAI's answer for an id it does not hold (never stored, store: false, expired)."""
    return {
        "error": {
            "message": f"Previous response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }


async def test_an_unknown_id_is_openais_previous_response_not_found():
    async with in_process(text_answer("x")) as relay:
        response = await relay.post(PATH, {"model": "m", "input": "x", "previous_response_id": "resp_nope"})
    assert response.status == 400 and response.json() == not_found("resp_nope")
    assert response.headers["x-should-retry"] == "false"


async def test_store_false_is_honoured():
    async with in_process(text_answer("x")) as relay:
        one = (await relay.post(PATH, {"model": "m", "input": "x", "store": False})).json()
        two = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": one["id"]})
    assert one["store"] is False
    assert two.status == 400 and two.json() == not_found(one["id"])


async def test_an_evicted_response_is_not_found():
    async with in_process(text_answer("x"), store_conversations=1) as relay:
        one = (await relay.post(PATH, {"model": "m", "input": "one"})).json()
        two = (await relay.post(PATH, {"model": "m", "input": "two"})).json()
        gone = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": one["id"]})
        kept = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": two["id"]})
    assert gone.status == 400 and gone.json() == not_found(one["id"])
    assert kept.status == 200


async def test_a_failed_response_is_not_stored():
    script = [Start(id="-", model=MODEL), ErrorFrame(id="-", code="refused", message="User rejected sampling request")]
    async with in_process(script) as relay:
        failed = events_of((await relay.post(PATH, {"model": "m", "input": "x", "stream": True})).body)
        response_id = failed[-1][1]["response"]["id"]
        again = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": response_id})
    assert again.status == 400 and again.json() == not_found(response_id)


async def test_with_the_store_off_previous_response_id_is_a_400_that_says_so():
    async with in_process(text_answer("x"), store_conversations=0) as relay:
        one = (await relay.post(PATH, {"model": "m", "input": "x"})).json()
        two = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": one["id"]})
    assert one["store"] is False
    error = two.json()["error"]
    assert two.status == 400 and error["param"] == "previous_response_id" and error["code"] is None
    assert "--store-conversations 0" in error["message"] and "whole conversation" in error["message"]


def test_previous_response_id_must_be_a_string():
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps({"input": "x", "previous_response_id": 5}).encode())
    assert error.value.param == "previous_response_id"


async def test_a_continuation_over_the_body_limit_is_a_413():
    async with in_process(text_answer("ok"), max_body_bytes=400) as relay:
        one = (await relay.post(PATH, {"model": "m", "input": "x" * 150})).json()
        small = await relay.post(PATH, {"model": "m", "input": "y", "previous_response_id": one["id"]})
        big = await relay.post(PATH, {"model": "m", "input": "y" * 150, "previous_response_id": one["id"]})
    assert small.status == 200, small.body
    assert big.status == 413 and big.json()["error"]["param"] == "previous_response_id"
    assert "--max-body-bytes" in big.json()["error"]["message"]


def test_a_conversation_object_is_refused_naming_it_not_dropped():
    with pytest.raises(RelayError) as error:
        parse_request(json.dumps({"input": "x", "conversation": "conv_123"}).encode())
    assert error.value.param == "conversation" and "previous_response_id" in error.value.message
